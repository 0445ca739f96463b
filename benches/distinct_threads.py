#!/usr/bin/env python3
"""Event streams for the memory benchmark (BENCHMARKS.md, "Memory").

    distinct_threads.py N many   N events, each a new conversation: its own message id (so its
                                 own thread key) and its own subject; N tracked threads
    distinct_threads.py N few    the same N events on one message id and one subject: one thread

The two streams have the same length, line sizes and timestamps, so the difference between the
replays' maximum RSS is what the N threads (thread entry, key, subject, message-id record) cost.
Ordinary conversations, not reply-alls: a thread with a reply-all also holds its windows.
"""
import sys

def main():
    n = int(sys.argv[1])
    many = sys.argv[2] == "many"
    base_ms = 1_700_000_000_000
    out = sys.stdout
    write = out.write
    for i in range(n):
        ms = base_ms + i // 10
        k = i if many else 0
        write(
            '{"timestamp":%d,"message_id":"<%08x.%06d@mail.example.org>","sender":"user%d@example.org",'
            '"recipient_count":3,"subject":"Quarterly report draft %07d"}\n'
            % (ms, k * 2654435761 % (1 << 32), k, i % 5000, k)
        )

if __name__ == "__main__":
    main()
