-- A stock movement is kept once, as its entry in the audit log
-- (`movement_record` in runtime::ports::inventory_store): the movements
-- table was a second copy of the same facts, one more row written for
-- every reservation, release and deduction.
--
-- Every movement that names an actor has its audit entry already (both
-- arrived in 0006), so those rows go. The movements recorded before the
-- audit log have no entry: they stay, frozen, and the trail lists them
-- first. Audit entries are numbered after the last of them, so a
-- product's trail keeps one numbering that only grows.
DELETE FROM inventory_movements WHERE actor IS NOT NULL;
ALTER TABLE inventory_movements RENAME TO inventory_movements_before_audit;
ALTER TABLE inventory_movements_before_audit DROP COLUMN actor;
ALTER TABLE inventory_movements_before_audit DROP COLUMN request_id;
