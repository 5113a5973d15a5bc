-- The rules that decided an order when it was placed (its first event's
-- `policy`), kept for the order view; NULL when none was recorded.
ALTER TABLE orders_orders ADD COLUMN policy TEXT;
