"""Running past one machine: roles of one program over PostgreSQL and a durable ingest log.

`logsense serve --role api|processor|worker` (the default `all` is one process and none of this):
- `api` replicas hold no stream state. A batch is checked, published to the ingest log
  (`broker`: one Redis Stream per partition, a stream's batches in one partition by its id),
  and answered with its owner's reply, so the instant RAPID verdict stays in the HTTP answer and
  an acknowledged line is committed in PostgreSQL.
- `processor`s own partitions (`leases`: a lease with a fencing epoch in PostgreSQL, one owner
  at a time). The owner holds the parser, RAPID and open windows of its streams and stores each
  batch in one transaction with its idempotency row and any new templates (`stream_parsers`),
  so a redelivered batch is stored once and template ids survive a handover.
- `worker`s claim queued windows and jobs from PostgreSQL (`FOR UPDATE SKIP LOCKED`, claims
  that expire) and run the schedule under an advisory lock.
- Everyone follows `events`, the ordered per-stream log of what changes a live model, and
  reloads that stream from the database.

On Kafka or Redpanda the same design maps partition for partition: a topic keyed by stream id,
the consumer group's assignment instead of the lease table's (the fencing epoch stays in
PostgreSQL), the committed offset instead of XACK, a reply topic instead of reply lists.
"""
