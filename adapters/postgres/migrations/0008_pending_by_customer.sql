-- The PENDING orders' index, keyed by customer, newest first, like
-- orders_by_customer. Keyed by order id, the planner used it for a
-- customer's `GET /api/orders?status=PENDING` and walked every PENDING
-- order of every customer: 34 ms a page behind a 50,000-order backlog.
-- Now that page reads only its customer's entries. The backlog count reads
-- the same entries as before, one per PENDING order.
DROP INDEX orders.orders_pending;
CREATE INDEX orders_pending ON orders.orders (customer_id, created_at DESC, order_id DESC) WHERE status = 'PENDING';
