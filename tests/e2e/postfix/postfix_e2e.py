#!/usr/bin/env python3
"""Helpers for tests/e2e/postfix/run.sh: the mail sent over SMTP, and the checks of each hop
(Postfix's log, the Kafka input topic rsyslog writes, the alerts topic stormwatch writes).

Run with the e2e virtualenv's python (confluent-kafka). Every `check-*` command prints one line
per finding and exits 0 when the check holds, 1 when it does not.
"""

import argparse
import json
import re
import smtplib
import sys
import time
import uuid
from email.message import EmailMessage
from email.utils import formatdate

# Recipients after expanding the list (main.cf.in, run.sh's virtual map).
LIST_SIZE = 3000
# Contract rule "early": 3 reply-alls from 3 senders within 10 minutes.
EARLY_REPLIES = 3


def log(msg):
    print(msg, flush=True)


def fail(msg):
    print(f"  FAIL: {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# the mail


def plan(run_id, domain, subject):
    """The conversation: an original to the list, then reply-alls from five senders. Two carry
    In-Reply-To and References, one References only, two only a reply prefix on the subject
    (clients that drop the headers). The subject is not ASCII, so every Subject header goes
    out RFC 2047-encoded, as mail clients send it; the list-tagged one is long enough (79
    characters with `Subject: `) that smtplib folds it, as clients fold long subjects."""
    root = f"<storm.{run_id}@{domain}>"
    first = f"<reply1.{run_id}@{domain}>"
    return [
        {"from": f"chief.executive@{domain}", "message_id": root, "subject": subject,
         "in_reply_to": None, "references": None, "kind": "original"},
        {"from": f"alice.jones@{domain}", "message_id": first, "subject": f"Re: {subject}",
         "in_reply_to": root, "references": root, "kind": "reply (In-Reply-To, References)"},
        {"from": f"bob.smith@{domain}", "message_id": f"<reply2.{run_id}@{domain}>",
         "subject": f"RE: {subject}", "in_reply_to": None, "references": f"{root} {first}",
         "kind": "reply (References only)"},
        {"from": f"carol.white@{domain}", "message_id": f"<reply3.{run_id}@{domain}>",
         "subject": f"Re: {subject}", "in_reply_to": None, "references": None,
         "kind": "reply (subject only)"},
        {"from": f"dave.brown@{domain}", "message_id": f"<reply4.{run_id}@{domain}>",
         "subject": f"AW: [all-staff] {subject}", "in_reply_to": None, "references": None,
         "kind": "reply (subject only, German prefix, list tag)"},
        {"from": f"erin.green@{domain}", "message_id": f"<reply5.{run_id}@{domain}>",
         "subject": f"Re: {subject}", "in_reply_to": first, "references": f"{root} {first}",
         "kind": "reply to a reply (In-Reply-To, References)"},
    ]


def cmd_send(args):
    """Sends the conversation over SMTP, one connection per message as mail clients do, with
    a pause between messages so that their log lines come in order. Writes what was sent to
    --out."""
    run_id = args.run_id or uuid.uuid4().hex[:12]
    subject = f"Staff survey {run_id} \u2013 please read"
    messages = plan(run_id, args.domain, subject)
    host, port = args.server.rsplit(":", 1)
    for i, m in enumerate(messages):
        if i:
            time.sleep(args.pause)
        msg = EmailMessage()
        msg["From"] = m["from"]
        msg["To"] = args.to
        msg["Subject"] = m["subject"]
        msg["Message-ID"] = m["message_id"]
        msg["Date"] = formatdate(localtime=False)
        if m["in_reply_to"]:
            msg["In-Reply-To"] = m["in_reply_to"]
        if m["references"]:
            msg["References"] = m["references"]
        msg.set_content(f"{m['kind']}\n")
        with smtplib.SMTP(host, int(port), timeout=30) as smtp:
            smtp.ehlo("client.nhs.test")
            refused = smtp.send_message(msg, from_addr=m["from"], to_addrs=[args.to])
        if refused:
            sys.exit(f"Postfix refused recipients of {m['message_id']}: {refused}")
        m["to"] = args.to
        log(f"  sent {m['kind']}: {m['message_id']} from {m['from']}")
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"run_id": run_id, "subject": subject, "messages": messages}, f, indent=1)
    return 0


def load_sent(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def expected_thread_key(sent):
    """The contract's thread key of the conversation: the original's normalized Message-ID."""
    return sent["messages"][0]["message_id"].strip().strip("<>")


# ---------------------------------------------------------------------------------------------
# hop 1: Postfix's log


# "... postfix/cleanup[443]: 32B949C003B: message-id=<...>" (short or long queue ids).
QUEUE_LINE = re.compile(r"postfix/(\w+)\[\d+\]: ([0-9A-Za-z]{6,}): (.*)$")


def per_message(lines, sent):
    """For each sent message: its queue id (from `cleanup ... message-id=`) and which of the
    lines stormwatch needs were seen for that queue id."""
    by_queue = {}
    for line in lines:
        m = QUEUE_LINE.search(line)
        if not m:
            continue
        program, queue_id, text = m.groups()
        by_queue.setdefault(queue_id, []).append((program, text))
    found = {}
    for msg in sent["messages"]:
        mid = msg["message_id"]
        for queue_id, entries in by_queue.items():
            if any(p == "cleanup" and t == f"message-id={mid}" for p, t in entries):
                found[mid] = (queue_id, entries)
                break
    return found


def missing_lines(msg, entries):
    """What is missing among the lines of one message: message-id, qmgr nrcpt, header INFO."""
    missing = []
    if not any(p == "qmgr" and f"nrcpt={LIST_SIZE} " in t for p, t in entries):
        missing.append(f"qmgr from=<{msg['from']}> ... nrcpt={LIST_SIZE}")
    headers = ["Subject"]
    if msg["in_reply_to"]:
        headers.append("In-Reply-To")
    if msg["references"]:
        headers.append("References")
    for h in headers:
        if not any(p == "cleanup" and t.startswith(f"info: header {h}: ") for p, t in entries):
            missing.append(f"cleanup info: header {h}:")
    return missing


def check_lines(lines, sent, where):
    found = per_message(lines, sent)
    ok = True
    for msg in sent["messages"]:
        mid = msg["message_id"]
        if mid not in found:
            fail(f"{where}: no `cleanup ... message-id={mid}` line ({msg['kind']})")
            ok = False
            continue
        queue_id, entries = found[mid]
        missing = missing_lines(msg, entries)
        if missing:
            fail(f"{where}: {mid} (queue id {queue_id}) lacks: {'; '.join(missing)}")
            ok = False
        else:
            log(f"  {where}: {mid} queue id {queue_id}: message-id, nrcpt={LIST_SIZE}, "
                f"header lines")
    return ok


def cmd_check_maillog(args):
    """Hop 1: Postfix logged, for every message sent, its message-id, the qmgr line with
    nrcpt=3000 (the list expanded) and the header INFO lines (header_checks)."""
    sent = load_sent(args.sent)
    deadline = time.time() + args.timeout
    while True:
        with open(args.maillog, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
        found = per_message(lines, sent)
        complete = len(found) == len(sent["messages"]) and all(
            not missing_lines(m, found[m["message_id"]][1]) for m in sent["messages"])
        if complete or time.time() > deadline:
            break
        time.sleep(0.5)
    ok = check_lines(lines, sent, "maillog")
    log(f"  maillog: {len(lines)} lines")
    return 0 if ok else 1


# ---------------------------------------------------------------------------------------------
# Kafka


def kafka_conf(brokers, **extra):
    conf = {"bootstrap.servers": brokers, "broker.address.family": "v4"}
    conf.update(extra)
    return conf


def read_topic(brokers, topic, done, timeout):
    """Reads `topic` from the beginning of every partition, without committing, handing the
    values read so far to done(values) until it returns True or `timeout` seconds pass."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(kafka_conf(brokers, **{
        "group.id": f"postfix-e2e-check-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }))
    values = []
    try:
        md = consumer.list_topics(topic, timeout=10)
        if topic not in md.topics or md.topics[topic].error is not None:
            fail(f"topic {topic} does not exist on {brokers}")
            return False, values
        partitions = sorted(md.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, -2) for p in partitions])
        deadline = time.time() + timeout
        while time.time() < deadline:
            batch = consumer.consume(num_messages=5000, timeout=0.5)
            fresh = False
            for msg in batch:
                if msg.error():
                    continue
                values.append(msg.value() or b"")
                fresh = True
            if fresh and done(values):
                return True, values
        return done(values), values
    finally:
        consumer.close()


def cmd_check_input(args):
    """Hop 2: rsyslog's omkafka put Postfix's lines on the input topic, each one a whole
    syslog line as Postfix wrote it (no rsyslog prefix), with every line hop 1 needs."""
    sent = load_sent(args.sent)

    def complete(values):
        lines = [v.decode("utf-8", "replace") for v in values]
        found = per_message(lines, sent)
        return len(found) == len(sent["messages"]) and all(
            not missing_lines(m, found[m["message_id"]][1]) for m in sent["messages"])

    _, values = read_topic(args.brokers, args.topic, complete, args.timeout)
    lines = [v.decode("utf-8", "replace") for v in values]
    log(f"  {args.topic}: {len(lines)} records")
    ok = check_lines(lines, sent, args.topic)
    with open(args.maillog, encoding="utf-8", errors="replace") as f:
        logged = set(f.read().splitlines())
    shipped = [line for line in lines if "postfix/" in line]
    if shipped and not set(shipped) <= logged:
        strange = [line for line in shipped if line not in logged][:3]
        fail(f"{args.topic}: records that are not maillog lines as written: {strange}")
        ok = False
    if args.save:
        with open(args.save, "w", encoding="utf-8") as f:
            for line in lines:
                f.write(line + "\n")
    return 0 if ok else 1


def cmd_check_storm(args):
    """Hop 3: stormwatch read the topic with input.format = "postfix" and announced the storm
    on the alerts topic: one storm_started for the original's thread (the contract's thread
    key, every reply on it: header replies and subject-only replies), rule early, with the
    counts of at least three reply-alls to the 3,000-recipient list from three senders."""
    sent = load_sent(args.sent)
    key = expected_thread_key(sent)

    def started(values):
        for v in values:
            try:
                alert = json.loads(v)
            except ValueError:
                continue
            if alert.get("kind") == "storm_started" and alert.get("thread_key") == key:
                return True
        return False

    found, values = read_topic(args.brokers, args.topic, started, args.timeout)
    # What else arrived with it (a split thread would show as a second storm).
    if found:
        _, values = read_topic(args.brokers, args.topic, lambda _v: False, args.settle)
    alerts = []
    for v in values:
        try:
            alerts.append(json.loads(v))
        except ValueError:
            fail(f"{args.topic}: a record that is not JSON: {v[:200]!r}")
    if args.save:
        with open(args.save, "w", encoding="utf-8") as f:
            for a in alerts:
                f.write(json.dumps(a) + "\n")
    for a in alerts:
        log(f"  {args.topic}: {a.get('kind')} {a.get('severity')}/{a.get('rule')} "
            f"thread_key={a.get('thread_key')} reply_alls={a.get('reply_alls')} "
            f"distinct_senders={a.get('distinct_senders')} deliveries={a.get('deliveries')} "
            f"subject={a.get('subject')!r}")
    if not found:
        fail(f"no storm_started with thread_key {key!r} on {args.topic} after {args.timeout} s"
             f" ({len(alerts)} alerts there)")
        return 1
    ok = True
    start = next(a for a in alerts if a.get("kind") == "storm_started"
                 and a.get("thread_key") == key)
    expect = {
        "severity": "warning",
        "rule": "early",
    }
    for field, want in expect.items():
        if start.get(field) != want:
            fail(f"storm_started {field} = {start.get(field)!r}, expected {want!r}")
            ok = False
    replies = start.get("reply_alls")
    senders = start.get("distinct_senders")
    deliveries = start.get("deliveries")
    if not isinstance(replies, int) or replies < EARLY_REPLIES:
        fail(f"reply_alls = {replies!r}, expected >= {EARLY_REPLIES}")
        ok = False
    if not isinstance(senders, int) or senders < EARLY_REPLIES:
        fail(f"distinct_senders = {senders!r}, expected >= {EARLY_REPLIES}")
        ok = False
    if not isinstance(deliveries, int) or not isinstance(replies, int) or \
            deliveries < replies * LIST_SIZE:
        fail(f"deliveries = {deliveries!r}: expected >= {LIST_SIZE} per reply-all "
             f"({replies!r} reply-alls): the recipient count is nrcpt after the list expanded")
        ok = False
    if start.get("subject") is None or sent["subject"].lower() not in start["subject"].lower():
        fail(f"subject = {start.get('subject')!r}, expected the decoded {sent['subject']!r} "
             f"(with or without a reply prefix)")
        ok = False
    others = sorted({a.get("thread_key") for a in alerts} - {key})
    if others:
        fail(f"storms on other thread keys {others}: replies split off the conversation")
        ok = False
    if ok:
        log(f"  storm_started on {key}: {replies} reply-alls from {senders} senders, "
            f"{deliveries} deliveries, {start.get('severity')}/{start.get('rule')}")
    return 0 if ok else 1


def cmd_check_board(args):
    """Every reply joined the conversation: stormwatch's /api/v1/storms shows the storm on the
    original's thread with all the reply-alls sent (the subject-only ones included, also the
    one whose long Subject the mail client folded, which Postfix logs with the line break as
    `?`), from as many senders, each to the 3,000 recipients."""
    import urllib.request

    sent = load_sent(args.sent)
    key = expected_thread_key(sent)
    replies = [m for m in sent["messages"] if m["kind"] != "original"]
    want = {"reply_alls": len(replies), "distinct_senders": len({m["from"] for m in replies}),
            "deliveries": len(replies) * LIST_SIZE}
    deadline = time.time() + args.timeout
    last = None
    while True:
        try:
            with urllib.request.urlopen(args.url, timeout=5) as resp:
                board = json.loads(resp.read())
            storm = next((s for s in board.get("active", []) if s.get("thread_key") == key),
                         None)
            last = storm.get("last_hour") if storm else None
            if last == want:
                log(f"  /api/v1/storms: {key} {storm.get('severity')}/{storm.get('rule')} "
                    f"last hour {last}")
                return 0
            others = [s.get("thread_key") for s in board.get("active", [])
                      if s.get("thread_key") != key]
        except (OSError, ValueError) as e:
            last, others = f"({e})", []
        if time.time() > deadline:
            break
        time.sleep(0.5)
    fail(f"/api/v1/storms: {key} last hour {last}, expected {want}; other active storms: "
         f"{others or 'none'}")
    fail("a reply missing from the thread is one stormwatch did not attach to the "
         "conversation (see sent.json for which kinds were sent)")
    return 1


def cmd_check_replay(args):
    """`stormwatch replay --format postfix` of the shipped lines gives the same storm_started
    as the service (the contract's required fields)."""
    fields = ["kind", "thread_key", "severity", "rule", "at", "started_at", "reply_alls",
              "distinct_senders", "deliveries", "subject", "block_until"]

    def load(path):
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    service = [{k: a.get(k) for k in fields} for a in load(args.service)]
    replay = [{k: a.get(k) for k in fields} for a in load(args.replay)]
    started = [a for a in replay if a["kind"] == "storm_started"]
    if not started:
        fail(f"replay of the shipped lines raised no storm_started ({len(replay)} alerts)")
        return 1
    missing = [a for a in started if a not in service]
    for a in missing:
        fail(f"replay has {json.dumps(a)}, the alerts topic does not")
    if missing:
        return 1
    log(f"  replay: {len(replay)} alerts, the storm_started as on the alerts topic")
    return 0


def cmd_stormwatch_config(args):
    text = f"""# written by tests/e2e/postfix/run.sh
[input]
format = "postfix"

[input.postfix]
utc_offset = "+00:00"

[kafka]
brokers = "{args.brokers}"
group_id = "stormwatch-postfix-e2e"
topic = "{args.topic}"
alerts_topic = "{args.alerts_topic}"
dlq_topic = "{args.dlq_topic}"

[http]
listen = "{args.listen}"
"""
    with open(args.dst, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("send")
    p.add_argument("server", help="127.0.0.1:PORT")
    p.add_argument("--to", required=True)
    p.add_argument("--domain", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--run-id")
    p.add_argument("--pause", type=float, default=1.0)
    p.set_defaults(fn=cmd_send)

    p = sub.add_parser("check-maillog")
    p.add_argument("maillog")
    p.add_argument("--sent", required=True)
    p.add_argument("--timeout", type=float, default=30)
    p.set_defaults(fn=cmd_check_maillog)

    p = sub.add_parser("check-input")
    p.add_argument("brokers")
    p.add_argument("topic")
    p.add_argument("--sent", required=True)
    p.add_argument("--maillog", required=True)
    p.add_argument("--save")
    p.add_argument("--timeout", type=float, default=60)
    p.set_defaults(fn=cmd_check_input)

    p = sub.add_parser("check-storm")
    p.add_argument("brokers")
    p.add_argument("topic")
    p.add_argument("--sent", required=True)
    p.add_argument("--save")
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--settle", type=float, default=5)
    p.set_defaults(fn=cmd_check_storm)

    p = sub.add_parser("check-board")
    p.add_argument("url", help="stormwatch's /api/v1/storms URL")
    p.add_argument("--sent", required=True)
    p.add_argument("--timeout", type=float, default=30)
    p.set_defaults(fn=cmd_check_board)

    p = sub.add_parser("check-replay")
    p.add_argument("--service", required=True)
    p.add_argument("--replay", required=True)
    p.set_defaults(fn=cmd_check_replay)

    p = sub.add_parser("stormwatch-config")
    p.add_argument("dst")
    p.add_argument("--brokers", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--alerts-topic", required=True)
    p.add_argument("--dlq-topic", required=True)
    p.add_argument("--listen", required=True)
    p.set_defaults(fn=cmd_stormwatch_config)

    args = parser.parse_args()
    sys.exit(args.fn(args) or 0)


if __name__ == "__main__":
    main()
