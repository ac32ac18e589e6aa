"""Wait until the local Kafka broker answers a metadata request, then make sure the topic exists.

Usage: kafka_ready.py BOOTSTRAP TOPIC PARTITIONS   (exit 1 when the broker is not ready in 60 s)
"""

import sys
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic


def main(bootstrap: str, topic: str, partitions: int) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = time.monotonic() + 60
    while True:
        try:
            metadata = admin.list_topics(timeout=2)
            if metadata.brokers:
                break
        except KafkaException:
            pass
        if time.monotonic() > deadline:
            print(f"broker at {bootstrap} did not answer within 60 s", file=sys.stderr)
            return 1
        time.sleep(0.5)
    if topic not in metadata.topics:
        future = admin.create_topics([NewTopic(topic, partitions, 1)])[topic]
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
