"""The peer side of bench/kafka.sh: what a script-based Kafka backup does, with librdkafka
(confluent-kafka), the C client most tools are built on. Commands:

  create BS TOPIC PARTITIONS          a topic (kafka-python's admin client)
  gen DIR PARTITIONS START COUNT SIZE files p0..pN of "key<TAB>value" lines, round-robin
  produce BS TOPIC DIR                each file pN into partition N (idempotent, acks=all)
  dump BS TOPIC PARTITIONS DIR        every record of every partition into files pN
"""
import os
import random
import string
import sys


def create(bs, topic, parts):
    from kafka.admin import KafkaAdminClient, NewTopic
    KafkaAdminClient(bootstrap_servers=bs).create_topics([NewTopic(topic, int(parts), 1)])


def gen(d, parts, start, n, size):
    parts, start, n, size = int(parts), int(start), int(n), int(size)
    os.makedirs(d, exist_ok=True)
    rnd = random.Random(start)
    alphabet = (string.ascii_letters + string.digits).encode()
    files = [open(os.path.join(d, "p%d" % p), "wb") for p in range(parts)]
    for i in range(start, start + n):
        value = bytes(rnd.choice(alphabet) for _ in range(16)) * (size // 16)
        files[i % parts].write(b"k%d\t%s\n" % (i, value))
    for f in files:
        f.close()


def produce(bs, topic, d):
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bs, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 5, "batch.size": 1 << 20, "compression.type": "none"})
    for name in sorted(os.listdir(d)):
        part = int(name[1:])
        with open(os.path.join(d, name), "rb") as f:
            for line in f:
                key, value = line.rstrip(b"\n").split(b"\t", 1)
                while True:
                    try:
                        p.produce(topic, key=key, value=value, partition=part)
                        break
                    except BufferError:
                        p.poll(0.05)
                p.poll(0)
    left = p.flush(120)
    if left:
        sys.exit("%d records not delivered" % left)


def dump(bs, topic, parts, d):
    from confluent_kafka import Consumer, KafkaError, TopicPartition
    parts = int(parts)
    os.makedirs(d, exist_ok=True)
    c = Consumer({"bootstrap.servers": bs, "group.id": "bench-dump", "enable.auto.commit": False,
                  "enable.partition.eof": True, "fetch.max.bytes": 64 << 20})
    c.assign([TopicPartition(topic, p, 0) for p in range(parts)])
    files = [open(os.path.join(d, "p%d" % p), "wb") for p in range(parts)]
    done = set()
    while len(done) < parts:
        for m in c.consume(10000, timeout=0.2):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    done.add(m.partition())
                    continue
                sys.exit(str(m.error()))
            files[m.partition()].write(b"%s\t%s\n" % (m.key(), m.value()))
    for f in files:
        f.close()
    c.close()


if __name__ == "__main__":
    {"create": create, "gen": gen, "produce": produce, "dump": dump}[sys.argv[1]](*sys.argv[2:])
