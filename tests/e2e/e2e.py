#!/usr/bin/env python3
"""Helpers for tests/e2e/run.sh: configuration rewriting, producing the input through librdkafka
(confluent-kafka), and the checks against the real Tansu, Prometheus and Alertmanager.

Run with the e2e virtualenv's python (confluent-kafka, PyYAML). Every `check-*` command prints
one line per finding and exits 0 when the check holds, 1 when it does not; run.sh counts them.
Nothing here decides it has read a topic to its end from watermarks: Tansu 0.6.0 reports a
wrong high watermark for multi-record batches (shared/DESIGN.md), so consumers read until the
expected content is there or a timeout passes.
"""

import argparse
import base64
import glob
import json
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

# The contract's required alert fields (CONTRACT.md section 4; src/alert.rs REQUIRED_FIELDS).
REQUIRED_FIELDS = [
    "kind",
    "thread_key",
    "severity",
    "rule",
    "at",
    "started_at",
    "reply_alls",
    "distinct_senders",
    "deliveries",
    "subject",
    "block_until",
]
RFC3339_UTC_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def log(msg):
    print(msg, flush=True)


def fail(msg):
    print(f"  FAIL: {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# small utilities


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (all bound at once, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def http_get(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, resp.read()


def http_json(url, timeout=5.0):
    _, body = http_get(url, timeout)
    return json.loads(body)


def prom_query(prom, expr):
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        answer = http_json(url, timeout=10)
    except urllib.error.HTTPError as e:
        return None, f"HTTP {e.code}: {e.read().decode('utf-8', 'replace')[:300]}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        return None, str(e)
    if answer.get("status") != "success":
        return None, json.dumps(answer)[:300]
    return answer["data"], None


def format_ms(ms):
    dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_ts_ms(value):
    """The event timestamp in epoch ms (RFC 3339 with offset or epoch ms), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value.strip().upper().replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    return int(round(dt.timestamp() * 1000))


# ---------------------------------------------------------------------------------------------
# configuration rewriting


def yaml():
    import yaml as _yaml  # from the venv

    return _yaml


def cmd_am_config(args):
    """Copies the shipped Alertmanager config, pointing every receiver at the local receiver
    (one webhook per receiver, at /<receiver name>), everything else as shipped."""
    y = yaml()
    with open(args.src, encoding="utf-8") as f:
        config = y.safe_load(f)
    receivers = config.get("receivers") or []
    if not receivers:
        sys.exit(f"{args.src}: no receivers")
    for receiver in receivers:
        name = receiver["name"]
        for key in [k for k in receiver if k.endswith("_configs")]:
            del receiver[key]
        receiver["webhook_configs"] = [
            {"url": f"{args.receiver_url}/{urllib.parse.quote(name)}", "send_resolved": True}
        ]
    with open(args.dst, "w", encoding="utf-8") as f:
        y.safe_dump(config, f, sort_keys=False)
    log(f"alertmanager config: {len(receivers)} receivers -> {args.receiver_url}/<name>")


def cmd_prom_config(args):
    """Copies the shipped prometheus.yml with 1 s scrape and evaluation, the shipped rule files
    (resolved against the shipped file's directory), the local Alertmanager, and the
    stormwatch job scraping the local stormwatch. Other scrape jobs point at this Prometheus."""
    y = yaml()
    with open(args.src, encoding="utf-8") as f:
        config = y.safe_load(f)
    base = os.path.dirname(os.path.abspath(args.src))
    config.setdefault("global", {})
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["global"]["scrape_timeout"] = "1s"
    rule_files = []
    for pattern in config.get("rule_files") or []:
        matched = sorted(glob.glob(os.path.join(base, pattern)))
        if not matched:
            sys.exit(f"{args.src}: rule_files entry {pattern!r} matches no file")
        rule_files.extend(matched)
    if not rule_files:
        sys.exit(f"{args.src}: no rule_files")
    config["rule_files"] = rule_files
    config["alerting"] = {
        "alertmanagers": [{"static_configs": [{"targets": [args.alertmanager]}]}]
    }
    jobs = config.get("scrape_configs") or []
    if not any(job.get("job_name") == "stormwatch" for job in jobs):
        sys.exit(f"{args.src}: no scrape job named stormwatch")
    for job in jobs:
        target = args.stormwatch if job.get("job_name") == "stormwatch" else args.prometheus
        job["static_configs"] = [{"targets": [target]}]
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
    with open(args.dst, "w", encoding="utf-8") as f:
        y.safe_dump(config, f, sort_keys=False)
    log(f"prometheus config: rule files {', '.join(os.path.relpath(r) for r in rule_files)}")


def cmd_stormwatch_config(args):
    text = f"""# written by tests/e2e/run.sh
[kafka]
brokers = "{args.brokers}"
group_id = "stormwatch-e2e"

[http]
listen = "{args.listen}"

[sinks.alertmanager]
url = "{args.alertmanager}"
"""
    with open(args.dst, "w", encoding="utf-8") as f:
        f.write(text)


def cmd_free_ports(args):
    print(" ".join(str(p) for p in free_ports(args.n)))


# ---------------------------------------------------------------------------------------------
# Kafka


def kafka_conf(brokers, **extra):
    conf = {"bootstrap.servers": brokers, "broker.address.family": "v4"}
    conf.update(extra)
    return conf


def cmd_create_topics(args):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(kafka_conf(args.brokers))
    wanted = []
    for spec in args.topics:
        name, partitions = spec.split(":")
        wanted.append(NewTopic(name, num_partitions=int(partitions), replication_factor=1))
    futures = admin.create_topics(wanted, request_timeout=15)
    for topic, future in futures.items():
        try:
            future.result()
            log(f"created topic {topic}")
        except Exception as e:  # noqa: BLE001 (report any error as it is)
            if "TOPIC_ALREADY_EXISTS" in str(e):
                log(f"topic {topic} exists")
            else:
                sys.exit(f"cannot create topic {topic}: {e}")
    deadline = time.time() + 20
    while True:
        md = admin.list_topics(timeout=10)
        shape = {}
        for spec in args.topics:
            name, partitions = spec.split(":")
            t = md.topics.get(name)
            shape[name] = len(t.partitions) if t is not None and t.error is None else 0
        if all(shape[s.split(":")[0]] == int(s.split(":")[1]) for s in args.topics):
            log("topics: " + ", ".join(f"{k} ({v} partitions)" for k, v in shape.items()))
            return
        if time.time() > deadline:
            sys.exit(f"topics not visible in metadata as created: {shape}")
        time.sleep(0.5)


def extra_malformed(now_ms):
    """Malformed records added to the generated ones: (payload bytes, expected reason)."""
    future = format_ms(now_ms + 3600_000)
    recent = format_ms(now_ms - 60_000)
    return [
        (b"\xff\xfe{\"not\": \"utf-8\"}", "invalid_utf8"),
        (b"e2e: this is not JSON", "not_json"),
        (b"", "empty"),
        (
            json.dumps(
                {
                    "timestamp": future,
                    "message_id": "<future.1@e2e.invalid>",
                    "sender": "someone@e2e.invalid",
                    "recipient_count": 5,
                }
            ).encode(),
            "future_timestamp",
        ),
        (
            json.dumps(
                {
                    "timestamp": recent,
                    "message_id": "<no-count.1@e2e.invalid>",
                    "sender": "someone@e2e.invalid",
                }
            ).encode(),
            "missing_recipient_count",
        ),
    ]


def cmd_produce(args):
    """Re-times the generated stream (kept spacing, event time ending near now, up to the
    cutoff) and produces it paced at `speed` x, then the malformed records. Writes
    produced.jsonl (the valid records as produced, in order: the input of the expected replay)
    and malformed.json (every malformed payload, base64, with the expected reason if known)."""
    from confluent_kafka import Producer

    with open(args.stream, "rb") as f:
        lines = [line.rstrip(b"\n") for line in f if line.strip()]
    parsed = []  # (line, obj or None, ts or None)
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if not isinstance(obj, dict) or obj.get("label") == "malformed":
            parsed.append((line, None, None))
            continue
        ts = parse_ts_ms(obj.get("timestamp"))
        if ts is None:
            sys.exit(f"a generated event has a timestamp this script cannot read: {line[:200]!r}")
        parsed.append((line, obj, ts))
    times = [ts for _, _, ts in parsed if ts is not None]
    first = min(times)
    cutoff = parse_ts_ms(args.cutoff) if args.cutoff else max(times)
    if cutoff is None:
        sys.exit(f"bad --cutoff {args.cutoff!r}")
    span = cutoff - first
    speed = max(args.speed, 1)
    now_ms = int(time.time() * 1000)
    # Event time of the last record = the wall clock when it is produced, less a second.
    event_start = now_ms + span // speed - span - 1000
    schedule = []  # (due seconds, key, payload, is_malformed)
    malformed = []
    due = 0.0
    dropped = 0
    for line, obj, ts in parsed:
        if obj is None:
            malformed.append((line, None))
            schedule.append((due, None, line, True))
            continue
        if ts > cutoff:
            dropped += 1
            continue
        offset = ts - first
        obj["timestamp"] = format_ms(event_start + offset)
        obj.pop("label", None)
        due = offset / speed / 1000.0
        payload = json.dumps(obj, separators=(",", ":")).encode()
        schedule.append((due, obj.get("message_id"), payload, False))
    for payload, reason in extra_malformed(now_ms):
        malformed.append((payload, reason))
        schedule.append((due, None, payload, True))

    with open(os.path.join(args.out, "produced.jsonl"), "wb") as f:
        for _, _, payload, bad in schedule:
            if not bad:
                f.write(payload + b"\n")
    with open(os.path.join(args.out, "malformed.json"), "w", encoding="utf-8") as f:
        json.dump(
            [{"payload": base64.b64encode(p).decode(), "reason": r} for p, r in malformed], f
        )
    valid = sum(1 for s in schedule if not s[3])
    log(
        f"producing {valid} events (event time {format_ms(event_start)} .. "
        f"{format_ms(event_start + span)}, {dropped} after the cutoff left out) and "
        f"{len(malformed)} malformed records, paced at {speed}x: about {span / speed / 1000:.0f} s"
    )

    errors = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(str(err))

    producer = Producer(kafka_conf(args.brokers, **{"linger.ms": 5, "acks": "all"}))
    start = time.monotonic()
    for due_s, key, payload, _ in schedule:
        wait = due_s - (time.monotonic() - start)
        if wait > 0:
            producer.poll(0)
            time.sleep(wait)
        while True:
            try:
                producer.produce(args.topic, value=payload, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(30)
    if remaining or errors:
        sys.exit(f"producing failed: {remaining} undelivered, errors: {errors[:5]}")
    log(f"produced {len(schedule)} records in {time.monotonic() - start:.1f} s")


def consume_until(brokers, topic, done, timeout, what):
    """Reads `topic` from the beginning of every partition (no group offsets committed) and
    hands each message to done(msg) until it returns True or `timeout` seconds pass. Returns
    (found, messages)."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        kafka_conf(
            brokers,
            **{
                "group.id": f"e2e-check-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
            },
        )
    )
    try:
        md = consumer.list_topics(topic, timeout=10)
        partitions = sorted(md.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, -2) for p in partitions])  # -2: beginning
        messages = []
        deadline = time.time() + timeout
        while time.time() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    log(f"  ({what}: consumer error {msg.error()})")
                continue
            messages.append(msg)
            if done(messages):
                return True, messages
        return False, messages
    finally:
        consumer.close()


def canonical(alert):
    return json.dumps({k: alert.get(k) for k in REQUIRED_FIELDS}, sort_keys=True)


def cmd_check_alerts(args):
    with open(args.expected, encoding="utf-8") as f:
        expected = [json.loads(line) for line in f if line.strip()]
    want = {canonical(a) for a in expected}
    if not any(a["kind"] == "storm_started" for a in expected):
        fail("the replay of the produced stream raised no storm_started: the harness is wrong")
        return 1

    def done(messages):
        got = set()
        for m in messages:
            try:
                got.add(canonical(json.loads(m.value())))
            except (ValueError, TypeError, AttributeError):
                pass
        return want <= got

    found, messages = consume_until(args.brokers, args.topic, done, args.timeout, args.topic)
    ok = True
    alerts = []
    for m in messages:
        try:
            alert = json.loads(m.value())
        except (ValueError, TypeError):
            fail(f"{args.topic} holds a record that is not JSON: {m.value()[:200]!r}")
            ok = False
            continue
        alerts.append(alert)
        missing = [k for k in REQUIRED_FIELDS if k not in alert]
        if missing:
            fail(f"alert without required fields {missing}: {alert}")
            ok = False
        key = m.key().decode("utf-8", "replace") if m.key() is not None else None
        if key != alert.get("thread_key"):
            fail(f"alert keyed {key!r}, thread_key {alert.get('thread_key')!r}")
            ok = False
    started = [a for a in alerts if a.get("kind") == "storm_started"]
    if not started:
        fail(f"no storm_started on {args.topic} after {args.timeout} s ({len(alerts)} records)")
        return 1
    for a in started:
        problems = []
        if a.get("kind") not in ("storm_started", "storm_escalated", "storm_ended"):
            problems.append("kind")
        if not isinstance(a.get("thread_key"), str) or not a["thread_key"]:
            problems.append("thread_key")
        if a.get("severity") not in ("warning", "critical"):
            problems.append("severity")
        if a.get("rule") not in ("exchange", "amplification", "early", "sustained"):
            problems.append("rule")
        for k in ("at", "started_at", "block_until"):
            if not isinstance(a.get(k), str) or not RFC3339_UTC_MS.match(a[k]):
                problems.append(k)
        for k in ("reply_alls", "distinct_senders", "deliveries"):
            if not isinstance(a.get(k), int) or a[k] < 0:
                problems.append(k)
        if a.get("subject") is not None and not isinstance(a["subject"], str):
            problems.append("subject")
        if a.get("at") != a.get("started_at"):
            problems.append("at != started_at")
        if problems:
            fail(f"storm_started with bad fields {problems}: {a}")
            ok = False
    got = [canonical(a) for a in alerts]
    missing = want - set(got)
    if missing:
        fail(f"{len(missing)} of the {len(want)} alerts the replay of the same stream gives are "
             f"not on {args.topic}:")
        for m in sorted(missing):
            log(f"    missing {m}")
        ok = False
    extra = set(got) - want
    for e in sorted(extra):
        log(f"  note: on {args.topic} but not in the replay: {e}")
    starts = [(a.get("thread_key"), a.get("started_at")) for a in started]
    if len(starts) != len(set(starts)):
        fail(f"a storm was announced twice: {starts}")
        ok = False
    summary = ", ".join(
        f"{a['kind']} {a['severity']}/{a['rule']} {a['thread_key'][:40]}" for a in alerts
    )
    log(f"  {len(alerts)} alerts on {args.topic}: {summary}")
    with open(args.save, "w", encoding="utf-8") as f:
        for a in alerts:
            f.write(json.dumps(a) + "\n")
    return 0 if ok and found else 1


def cmd_check_dlq(args):
    with open(args.malformed, encoding="utf-8") as f:
        malformed = [(base64.b64decode(m["payload"]), m["reason"]) for m in json.load(f)]
    wanted = [p for p, _ in malformed]

    def done(messages):
        got = [m.value() or b"" for m in messages]
        return all(got.count(p) >= wanted.count(p) for p in set(wanted))

    found, messages = consume_until(args.brokers, args.topic, done, args.timeout, args.topic)
    ok = True
    records = []
    for m in messages:
        headers = {k: (v.decode("utf-8", "replace") if v is not None else None)
                   for k, v in (m.headers() or [])}
        records.append((m.value() or b"", headers))
    for payload, reason in malformed:
        matches = [h for p, h in records if p == payload]
        if not matches:
            fail(f"not on {args.topic} with its original bytes: {payload[:120]!r}")
            ok = False
            continue
        h = matches[0]
        if not h.get("stormwatch.reason"):
            fail(f"DLQ record without a stormwatch.reason header: {payload[:80]!r} {h}")
            ok = False
        elif reason is not None and h["stormwatch.reason"] != reason:
            fail(f"DLQ reason {h['stormwatch.reason']!r}, expected {reason!r}: {payload[:80]!r}")
            ok = False
        if h.get("stormwatch.source_topic") != args.source_topic:
            fail(f"stormwatch.source_topic {h.get('stormwatch.source_topic')!r}")
            ok = False
        for k in ("stormwatch.error", "stormwatch.source_partition", "stormwatch.source_offset"):
            if k not in h:
                fail(f"DLQ record without header {k}: {payload[:80]!r}")
                ok = False
    reasons = {}
    for _, h in records:
        reasons[h.get("stormwatch.reason")] = reasons.get(h.get("stormwatch.reason"), 0) + 1
    log(f"  {len(records)} records on {args.topic} (expected {len(malformed)}), by reason: "
        f"{dict(sorted(reasons.items(), key=lambda kv: str(kv[0])))}")
    return 0 if ok and found else 1


# ---------------------------------------------------------------------------------------------
# Alertmanager, Prometheus, the dashboard


def rule_labels(rules_glob, alertname):
    y = yaml()
    for path in sorted(glob.glob(rules_glob)):
        with open(path, encoding="utf-8") as f:
            doc = y.safe_load(f) or {}
        for group in doc.get("groups") or []:
            for rule in group.get("rules") or []:
                if rule.get("alert") == alertname:
                    return rule.get("labels") or {}
    return None


def am_alerts(am, alertname):
    url = f"{am}/api/v2/alerts?" + urllib.parse.urlencode({"filter": f'alertname="{alertname}"'})
    return http_json(url)


def describe_am(alert):
    labels = ",".join(f"{k}={v}" for k, v in sorted(alert["labels"].items()) if k != "alertname")
    status = alert.get("status", {})
    inhibited = " inhibited" if status.get("inhibitedBy") else ""
    return f"{{{labels}}} {status.get('state')}{inhibited}"


def cmd_check_am(args):
    """Waits until Alertmanager lists an active ReplyAllStorm from stormwatch's direct sink
    (source="stormwatch") and, with --from-prometheus, one from Prometheus' rule (the rule's
    own labels, generatorURL from this Prometheus)."""
    static = rule_labels(args.rules, "ReplyAllStorm") if args.from_prometheus else {}
    if static is None:
        fail(f"no ReplyAllStorm alerting rule in {args.rules}")
        return 1
    deadline = time.time() + args.timeout
    alerts = []
    while time.time() < deadline:
        try:
            alerts = am_alerts(args.am, "ReplyAllStorm")
        except (urllib.error.URLError, OSError, ValueError) as e:
            log(f"  (alertmanager: {e})")
            alerts = []
        if args.from_prometheus:
            chosen = [
                a for a in alerts
                if all(a["labels"].get(k) == v for k, v in static.items())
                and (a.get("generatorURL") or "").startswith(args.prometheus)
            ]
        else:
            chosen = [a for a in alerts if a["labels"].get("source") == "stormwatch"]
        if chosen:
            break
        time.sleep(1)
    what = "Prometheus' ReplyAllStorm rule" if args.from_prometheus else "stormwatch's sink"
    for a in alerts:
        log(f"  alertmanager: ReplyAllStorm {describe_am(a)}")
    if not chosen:
        fail(f"Alertmanager lists no ReplyAllStorm from {what} after {args.timeout} s")
        return 1
    log(f"  {len(chosen)} from {what}, labels {sorted(chosen[0]['labels'])}")
    return 0


def cmd_check_pages_once(args):
    """The shipped config's promise: one storm pages once. While both alerts are active the
    Prometheus backstop is inhibited by the direct alert and is never notified."""
    static = rule_labels(args.rules, "ReplyAllStorm") or {}
    alerts = am_alerts(args.am, "ReplyAllStorm")
    prom = [a for a in alerts
            if all(a["labels"].get(k) == v for k, v in static.items())
            and (a.get("generatorURL") or "").startswith(args.prometheus)]
    direct = [a for a in alerts if a["labels"].get("source") == "stormwatch"]
    ok = True
    for a in prom:
        if a.get("status", {}).get("state") != "suppressed":
            fail(f"the Prometheus backstop is not suppressed while the direct alert fires: "
                 f"{describe_am(a)}")
            ok = False
    deadline = time.time() + args.timeout
    notified = []
    while time.time() < deadline:
        notified = []
        if os.path.exists(args.received):
            with open(args.received, encoding="utf-8") as f:
                for line in f:
                    n = json.loads(line)
                    body = n["body"] if isinstance(n["body"], dict) else {}
                    for a in body.get("alerts", []):
                        notified.append((n["path"], body.get("status"), a))
        if any(a["labels"].get("source") == "stormwatch" and a["labels"].get("alertname") ==
               "ReplyAllStorm" for _, _, a in notified):
            break
        time.sleep(1)
    storm_notes = [(p, s, a) for p, s, a in notified
                   if a["labels"].get("alertname") == "ReplyAllStorm"]
    for p, s, a in storm_notes:
        labels = {k: v for k, v in a["labels"].items() if k in ("severity", "source", "rule")}
        log(f"  receiver {p}: {a.get('status')} ReplyAllStorm {labels}")
    if not any(a["labels"].get("source") == "stormwatch" for _, _, a in storm_notes):
        fail(f"the receiver got no ReplyAllStorm notification from the direct alert after "
             f"{args.timeout} s (routes: {args.received})")
        ok = False
    backstop = [a for _, _, a in storm_notes
                if all(a["labels"].get(k) == v for k, v in static.items())
                and a["labels"].get("source") != "stormwatch"]
    if backstop:
        fail(f"the Prometheus backstop was notified too ({len(backstop)} times): "
             "one storm paged twice")
        ok = False
    if not direct:
        fail("no direct alert in Alertmanager")
        ok = False
    return 0 if ok else 1


def cmd_check_prom_alert(args):
    expr = f'ALERTS{{alertname="{args.alertname}", alertstate="firing"}}'
    deadline = time.time() + args.timeout
    while True:
        data, err = prom_query(args.prom, expr)
        if data and data["result"]:
            for r in data["result"]:
                log(f"  {expr}: {r['metric']}")
            return 0
        if time.time() > deadline:
            pending, _ = prom_query(args.prom, f'ALERTS{{alertname="{args.alertname}"}}')
            fail(f"{expr} is empty after {args.timeout} s ({err or 'no series'}); "
                 f"all states: {pending and pending['result']}")
            return 1
        time.sleep(2)


def cmd_check_no_health_alerts(args):
    expr = 'ALERTS{alertname=~"Stormwatch.+", alertstate="firing"}'
    data, err = prom_query(args.prom, expr)
    if err:
        fail(f"{expr}: {err}")
        return 1
    up, err = prom_query(args.prom, 'up{job="stormwatch"}')
    ok = True
    if err or not up["result"] or up["result"][0]["value"][1] != "1":
        fail(f'up{{job="stormwatch"}} is not 1: {err or up["result"]}')
        ok = False
    if data["result"]:
        for r in data["result"]:
            fail(f"health alert firing during a healthy run: {r['metric']}")
        ok = False
    pending, _ = prom_query(args.prom, 'ALERTS{alertname=~"Stormwatch.+"}')
    for r in (pending or {}).get("result", []):
        log(f"  note: {r['metric'].get('alertname')} is {r['metric'].get('alertstate')}")
    return 0 if ok else 1


def dashboard_exprs(dashboard):
    out = []

    def walk(panels):
        for p in panels or []:
            for t in p.get("targets") or []:
                if t.get("expr"):
                    out.append((p.get("title", "?"), t.get("refId", "?"), t["expr"]))
            walk(p.get("panels"))

    walk(dashboard.get("panels"))
    for row in dashboard.get("rows") or []:  # old-style dashboards
        walk(row.get("panels"))
    return out


def substitute(expr, variables):
    def repl(m):
        name = m.group(1) or m.group(2)
        name = name.split(":")[0]
        if name not in variables:
            raise KeyError(name)
        return variables[name]

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_:]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", repl, expr)


def cmd_check_dashboard(args):
    with open(args.dashboard, encoding="utf-8") as f:
        dashboard = json.load(f)
    variables = {
        "__rate_interval": "1m",
        "__interval": "1m",
        "__range": "1h",
        "__range_s": "3600",
        "interval": "1m",
        "datasource": "prometheus",
        "job": "stormwatch",
        # As Grafana puts a single chosen value: as it is (its dots match themselves too).
        "instance": args.instance,
    }
    ok = True
    # Template variables: label_values(metric, label) must find the job and the instance.
    for var in (dashboard.get("templating") or {}).get("list") or []:
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if var.get("type") != "query" or not isinstance(query, str):
            continue
        m = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*", query)
        if not m:
            fail(f"variable {var.get('name')}: query {query!r} not understood by this check")
            ok = False
            continue
        try:
            selector = substitute(m.group(1), variables)
        except KeyError as e:
            fail(f"variable {var.get('name')}: unknown variable {e} in {query!r}")
            ok = False
            continue
        url = f"{args.prom}/api/v1/label/{m.group(2)}/values?" + urllib.parse.urlencode(
            {"match[]": selector})
        values = http_json(url).get("data") or []
        if not values:
            fail(f"variable {var.get('name')}: {query!r} finds no value")
            ok = False
        else:
            log(f"  ok   variable {var.get('name')}: {values}")
    exprs = dashboard_exprs(dashboard)
    if not exprs:
        fail("the dashboard has no PromQL expression")
        return 1
    empty = []
    answered = 0
    for title, ref, expr in exprs:
        try:
            q = substitute(expr, variables)
        except KeyError as e:
            fail(f"{title!r} {ref}: unknown variable {e} in {expr!r}")
            ok = False
            continue
        data, err = prom_query(args.prom, q)
        if err:
            fail(f"{title!r} {ref}: {q}: {err}")
            ok = False
            continue
        answered += 1
        result = data["result"]
        if data["resultType"] in ("scalar", "string"):
            result = [result]
        if not result:
            empty.append((title, ref, q))
            continue
        values = [r["value"][1] if isinstance(r, dict) else r[1] for r in result]
        nan = all(v in ("NaN", "+Inf", "-Inf") for v in values)
        note = " (every value NaN/Inf)" if nan else ""
        log(f"  ok   {title!r} {ref}: {len(result)} series{note}")
    for title, ref, q in empty:
        fail(f"no data: {title!r} {ref}: {q}")
        ok = False
    log(f"  {answered - len(empty)} of {len(exprs)} dashboard queries return data")
    return 0 if ok else 1


def cmd_check_restart(args):
    """After a restart on the same consumer group: the service rebuilt its state from the
    re-read window and the alerts topic, announced nothing twice, reports the storms that were
    active before as active (with their announced start) and keeps them in Alertmanager."""
    with open(args.before, encoding="utf-8") as f:
        before = [json.loads(line) for line in f if line.strip()]
    last = {}
    for a in before:
        last[a["thread_key"]] = a
    active_before = {k: a for k, a in last.items() if a["kind"] != "storm_ended"}
    ok = True
    # Everything on the topic, read for `settle` seconds: nothing may have been added.
    _, messages = consume_until(args.brokers, args.topic, lambda _m: False, args.settle,
                                args.topic)
    after = []
    for m in messages:
        try:
            after.append(json.loads(m.value()))
        except (ValueError, TypeError):
            pass
    if len(after) < len(before):
        fail(f"{args.topic} holds {len(after)} alerts, {len(before)} before the restart")
        ok = False
    for a in after[len(before):]:
        fail(f"announced again after the restart: {a['kind']} {a['severity']}/{a['rule']} "
             f"{a['thread_key']} started_at {a['started_at']}")
        ok = False
    log(f"  {args.topic}: {len(before)} alerts before the restart, {len(after)} after")
    board = http_json(args.storms)
    active = {s["thread_key"]: s for s in board.get("active", [])}
    if set(active) != set(active_before):
        fail(f"active storms after the restart {sorted(active)}, before {sorted(active_before)}")
        ok = False
    for key, storm in active.items():
        announced = active_before.get(key)
        if announced and storm.get("started_at") != announced["started_at"]:
            fail(f"{key}: started_at {storm.get('started_at')} after the restart, announced "
                 f"{announced['started_at']}")
            ok = False
        log(f"  active after the restart: {key} {storm.get('severity')}/{storm.get('rule')} "
            f"since {storm.get('started_at')}")
    alerts = am_alerts(args.am, "ReplyAllStorm")
    direct = {a["labels"].get("thread_key") for a in alerts
              if a["labels"].get("source") == "stormwatch"
              and a.get("status", {}).get("state") == "active"}
    for key in active_before:
        if key[:128] not in direct:
            fail(f"Alertmanager no longer lists the direct alert for {key}")
            ok = False
    return 0 if ok else 1


def cmd_show_committed(args):
    """Prints the group's committed offset per partition and the event time of the record
    there (what a restart re-reads from). Information, not a check."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(kafka_conf(args.brokers, **{"group.id": args.group,
                                                     "enable.auto.commit": False}))
    try:
        md = consumer.list_topics(args.topic, timeout=10)
        tps = [TopicPartition(args.topic, p) for p in sorted(md.topics[args.topic].partitions)]
        committed = consumer.committed(tps, timeout=10)
    finally:
        consumer.close()
    for tp in committed:
        at = "-"
        if tp.offset >= 0:
            reader = Consumer(kafka_conf(args.brokers, **{
                "group.id": f"e2e-peek-{uuid.uuid4()}", "enable.auto.commit": False}))
            try:
                reader.assign([TopicPartition(args.topic, tp.partition, tp.offset)])
                deadline = time.time() + 5
                while time.time() < deadline:
                    msg = reader.poll(0.5)
                    if msg is None or msg.error():
                        continue
                    try:
                        at = json.loads(msg.value()).get("timestamp")
                    except (ValueError, TypeError, AttributeError):
                        at = "(not an event)"
                    break
                else:
                    at = "(nothing there yet: the end of the partition)"
            finally:
                reader.close()
        log(f"  committed {args.group} {args.topic}[{tp.partition}] = {tp.offset} "
            f"(event time there: {at})")


def cmd_check_lag(args):
    """Once stormwatch has read everything (the input stopped, /readyz is 200),
    stormwatch_kafka_consumer_lag (documented as the messages between the consumer position
    and the high watermark) must come down to 0 on every partition."""
    deadline = time.time() + args.timeout
    lags = {}
    while True:
        try:
            _, body = http_get(args.metrics)
            lags = {}
            for line in body.decode().splitlines():
                m = re.match(r'stormwatch_kafka_consumer_lag\{partition="(\d+)"\} (\S+)$', line)
                if m:
                    lags[int(m.group(1))] = float(m.group(2))
        except (urllib.error.URLError, OSError) as e:
            log(f"  ({args.metrics}: {e})")
        if lags and all(v == 0 for v in lags.values()):
            log(f"  consumer lag by partition: {lags}")
            return 0
        if time.time() > deadline:
            fail(f"stormwatch_kafka_consumer_lag after everything was read: {lags or 'no series'}"
                 f" (librdkafka's consumer_lag statistic is the high watermark minus the"
                 f" committed offset, which stormwatch holds back a window on purpose)")
            return 1
        time.sleep(1)


def cmd_wait_http(args):
    deadline = time.time() + args.timeout
    last = None
    while time.time() < deadline:
        try:
            status, _ = http_get(args.url, timeout=2)
            if status == 200:
                return 0
            last = status
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except (urllib.error.URLError, OSError) as e:
            last = str(e)
        time.sleep(0.3)
    print(f"{args.url} not ready after {args.timeout} s: {last}", file=sys.stderr)
    return 1


def cmd_wait_port(args):
    deadline = time.time() + args.timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", args.port), timeout=1):
                return 0
        except OSError:
            time.sleep(0.2)
    print(f"nothing listens on 127.0.0.1:{args.port} after {args.timeout} s", file=sys.stderr)
    return 1


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("free-ports")
    p.add_argument("n", type=int)
    p.set_defaults(fn=cmd_free_ports)

    p = sub.add_parser("wait-http")
    p.add_argument("url")
    p.add_argument("--timeout", type=float, default=30)
    p.set_defaults(fn=cmd_wait_http)

    p = sub.add_parser("wait-port")
    p.add_argument("port", type=int)
    p.add_argument("--timeout", type=float, default=30)
    p.set_defaults(fn=cmd_wait_port)

    p = sub.add_parser("am-config")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("receiver_url")
    p.set_defaults(fn=cmd_am_config)

    p = sub.add_parser("prom-config")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--stormwatch", required=True)
    p.add_argument("--alertmanager", required=True)
    p.add_argument("--prometheus", required=True)
    p.set_defaults(fn=cmd_prom_config)

    p = sub.add_parser("stormwatch-config")
    p.add_argument("dst")
    p.add_argument("--brokers", required=True)
    p.add_argument("--listen", required=True)
    p.add_argument("--alertmanager", required=True)
    p.set_defaults(fn=cmd_stormwatch_config)

    p = sub.add_parser("create-topics")
    p.add_argument("brokers")
    p.add_argument("topics", nargs="+", help="name:partitions")
    p.set_defaults(fn=cmd_create_topics)

    p = sub.add_parser("produce")
    p.add_argument("brokers")
    p.add_argument("topic")
    p.add_argument("stream")
    p.add_argument("--out", required=True)
    p.add_argument("--speed", type=int, default=120)
    p.add_argument("--cutoff", help="original event time after which events are left out")
    p.set_defaults(fn=cmd_produce)

    p = sub.add_parser("check-alerts")
    p.add_argument("brokers")
    p.add_argument("topic")
    p.add_argument("--expected", required=True)
    p.add_argument("--save", required=True)
    p.add_argument("--timeout", type=float, default=60)
    p.set_defaults(fn=cmd_check_alerts)

    p = sub.add_parser("check-dlq")
    p.add_argument("brokers")
    p.add_argument("topic")
    p.add_argument("--malformed", required=True)
    p.add_argument("--source-topic", required=True)
    p.add_argument("--timeout", type=float, default=60)
    p.set_defaults(fn=cmd_check_dlq)

    p = sub.add_parser("check-am")
    p.add_argument("am")
    p.add_argument("--rules", required=True)
    p.add_argument("--prometheus", required=True)
    p.add_argument("--from-prometheus", action="store_true")
    p.add_argument("--timeout", type=float, default=60)
    p.set_defaults(fn=cmd_check_am)

    p = sub.add_parser("check-pages-once")
    p.add_argument("am")
    p.add_argument("--rules", required=True)
    p.add_argument("--prometheus", required=True)
    p.add_argument("--received", required=True)
    p.add_argument("--timeout", type=float, default=60)
    p.set_defaults(fn=cmd_check_pages_once)

    p = sub.add_parser("check-prom-alert")
    p.add_argument("prom")
    p.add_argument("alertname")
    p.add_argument("--timeout", type=float, default=60)
    p.set_defaults(fn=cmd_check_prom_alert)

    p = sub.add_parser("check-no-health-alerts")
    p.add_argument("prom")
    p.set_defaults(fn=cmd_check_no_health_alerts)

    p = sub.add_parser("check-dashboard")
    p.add_argument("prom")
    p.add_argument("dashboard")
    p.add_argument("--instance", required=True)
    p.set_defaults(fn=cmd_check_dashboard)

    p = sub.add_parser("check-restart")
    p.add_argument("brokers")
    p.add_argument("topic")
    p.add_argument("--before", required=True)
    p.add_argument("--storms", required=True, help="stormwatch's /api/v1/storms URL")
    p.add_argument("--am", required=True)
    p.add_argument("--settle", type=float, default=10)
    p.set_defaults(fn=cmd_check_restart)

    p = sub.add_parser("show-committed")
    p.add_argument("brokers")
    p.add_argument("topic")
    p.add_argument("group")
    p.set_defaults(fn=cmd_show_committed)

    p = sub.add_parser("check-lag")
    p.add_argument("metrics", help="stormwatch's /metrics URL")
    p.add_argument("--timeout", type=float, default=15)
    p.set_defaults(fn=cmd_check_lag)

    args = parser.parse_args()
    sys.exit(args.fn(args) or 0)


if __name__ == "__main__":
    main()
