-- The rules that decided an order when it was placed (its first event's
-- `policy`), kept for the order view; NULL when none was recorded. Adding
-- a nullable column without a default rewrites nothing.
ALTER TABLE orders.orders ADD COLUMN policy jsonb;
