-- A message is queued for its consumers by a trigger, as it is stored.
-- Publishing took two statements, the second over the sequence numbers the
-- first handed back: a relay's batch of a thousand events sent a thousand
-- rows out of SQLite and back in while every other write waited for the one
-- writer connection. The consumers now travel with the message. A message
-- seen before is not stored again (ON CONFLICT DO NOTHING), so the trigger
-- does not run for it and it is not queued twice.
ALTER TABLE bus_messages ADD COLUMN consumers TEXT NOT NULL DEFAULT '[]';

CREATE TRIGGER bus_messages_queue AFTER INSERT ON bus_messages
BEGIN
    INSERT INTO bus_pending (consumer, seq) SELECT value, NEW.seq FROM json_each(NEW.consumers);
END;
