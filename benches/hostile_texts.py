#!/usr/bin/env python3
"""Input whose ids and subjects are as long as stormwatch keeps them, or which gives very many
threads reply-alls, for the memory bounds on texts and windows (BENCHMARKS.md, "Session 16"
and "Session 17").

    hostile_texts.py json N       N contract events, each a reply opening its own conversation,
                                  keyed by a 990-byte References id and with a 1 KiB subject
                                  (300 four-byte characters, cut to 256): the most text a thread
                                  and a message-id record hold
    hostile_texts.py postfix N    N Postfix messages that never get their qmgr line, each with
                                  a 4 KiB Subject header line and a 990-byte message id, 5,000
                                  a second of log time (all within qmgr_wait)
    hostile_texts.py exchange N   N Exchange RECEIVE rows at one timestamp (none expires), each
                                  with a 4 KiB subject and 900-byte message and reference ids
    hostile_texts.py reply-alls N N reply-alls to 2,500 people, each on a conversation of its
                                  own (distinct In-Reply-To), ten a millisecond: every thread
                                  holds reply-all windows, and none has a storm
    hostile_texts.py storms N     N conversations with 20 reply-alls each, from 20 senders, eight
                                  a millisecond: every thread has a storm (the early rule), and
                                  storms are never evicted
    hostile_texts.py all N        N events that are both: each a reply-all opening its own
                                  conversation by a 990-byte References id, with a distinct
                                  1 KiB subject, so every engine bound fills at once (threads'
                                  text and windows, records, remembered subjects)

The entry caps alone (`limits.max_threads`, `limits.max_message_ids`, `input.*.max_pending`)
let such input hold 5.3 GB (json), 0.6 GB (postfix) and 1.45 GB (exchange, of which the
assembly map about 1 GB); the byte bounds
(`limits.max_thread_bytes`, `limits.max_message_id_bytes`, `input.*.max_pending_bytes`) hold it
to what they allow. `reply-alls` held 0.8 GB at the default caps before
`limits.max_window_bytes`.
"""
import sys

FIELDS = (
    "#Fields: date-time,client-ip,client-hostname,server-ip,server-hostname,source-context,"
    "connector-id,source,event-id,internal-message-id,message-id,network-message-id,"
    "recipient-address,recipient-status,total-bytes,recipient-count,related-recipient-address,"
    "reference,message-subject,sender-address,return-path,message-info,directionality,tenant-id,"
    "original-client-ip,original-server-ip,custom-data,transport-traffic-type,log-id,"
    "schema-version"
)


def json_events(n, write, recipients=3, distinct_subjects=False):
    pad = "r" * 980
    subject = "\U0001d54a" * 300
    base_ms = 1_700_000_000_000
    for i in range(n):
        prefix = "%d " % i if distinct_subjects else ""
        write(
            '{"timestamp":%d,"message_id":"<m%d@x>","sender":"a@x","recipient_count":%d,'
            '"references":"<%d%s>","subject":"%s%s"}\n'
            % (base_ms + i // 10, i, recipients, i, pad, prefix, subject)
        )


def reply_alls(n, write):
    base_ms = 1_700_000_000_000
    for i in range(n):
        write(
            '{"timestamp":%d,"message_id":"m%d@x","sender":"s%d@x","recipient_count":2500,'
            '"in_reply_to":"root%d@x","subject":"Re: t%d"}\n' % (base_ms + i // 10, i, i, i, i)
        )


def storms(n, write):
    base_ms = 1_700_000_000_000
    k = 0
    for i in range(n):
        for j in range(20):
            k += 1
            write(
                '{"timestamp":%d,"message_id":"m%d.%d@x","sender":"s%d@x","recipient_count":2500,'
                '"in_reply_to":"root%d@x"}\n' % (base_ms + k // 8, i, j, j, i)
            )


def all_bounds(n, write):
    json_events(n, write, recipients=2500, distinct_subjects=True)


def postfix(n, write):
    subject = "s" * 4096
    pad = "i" * 980
    for i in range(n):
        second = i // 5000
        at = "Nov 25 10:%02d:%02d" % (second // 60, second % 60)
        queue_id = "%010X" % i
        write("%s mx1 postfix/cleanup[1]: %s: message-id=<%d%s>\n" % (at, queue_id, i, pad))
        write(
            "%s mx1 postfix/cleanup[1]: %s: info: header Subject: %s from pc[10.0.0.9];\n"
            % (at, queue_id, subject)
        )


def exchange(n, write):
    subject = "s" * 4096
    pad = "i" * 900
    write(FIELDS + "\n")
    for i in range(n):
        write(
            "2026-11-25T10:00:00Z,10.0.0.9,PC1,10.0.0.1,EX01,08DF;250 2.0.0 OK,EX01\\Default,SMTP,"
            "RECEIVE,%d,<%d%s@x.org>,1f2e,all@x.org,250 2.1.5,4096,1,,<r%d%s@x>;<l%d%s@x>,%s,"
            "ann@x.org,ann@x.org,,Originating,,10.0.0.9,10.0.0.1,,Email,,15.2\n"
            % (i, i, pad, i, pad, i, pad, subject)
        )


def main():
    kind, n = sys.argv[1], int(sys.argv[2])
    generators = {
        "json": json_events,
        "postfix": postfix,
        "exchange": exchange,
        "reply-alls": reply_alls,
        "storms": storms,
        "all": all_bounds,
    }
    generators[kind](n, sys.stdout.write)


if __name__ == "__main__":
    main()
