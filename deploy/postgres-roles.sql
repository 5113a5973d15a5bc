-- Least-privilege roles for the distributed mode, run once per database by
-- a superuser (psql -v database=shop -f deploy/postgres-roles.sql):
--
--   shop_migrator   owns the schemas; `shop migrate` runs as it
--                   (SHOP_MIGRATION_DATABASE_URL) once per release.
--   shop_order      what order instances connect as: read and write the
--                   orders schema's rows, nothing else.
--   shop_inventory  the same for inventory instances and their schema.
--
-- No serving role may create, alter or drop anything, nor see the other
-- context's tables, nor change or remove an audit entry. Set passwords with ALTER ROLE ... PASSWORD (or use
-- your cluster's authentication); a role running both contexts
-- (`--role all`) is granted both roles.

\set ON_ERROR_STOP on

CREATE ROLE shop_migrator LOGIN;
CREATE ROLE shop_order LOGIN;
CREATE ROLE shop_inventory LOGIN;

GRANT CONNECT ON DATABASE :"database" TO shop_migrator, shop_order, shop_inventory;
-- The migrations say CREATE SCHEMA IF NOT EXISTS, which asks for it.
GRANT CREATE ON DATABASE :"database" TO shop_migrator;
-- The migrations' own bookkeeping (_sqlx_migrations) lives in public.
GRANT USAGE, CREATE ON SCHEMA public TO shop_migrator;
ALTER DEFAULT PRIVILEGES FOR ROLE shop_migrator IN SCHEMA public
  GRANT SELECT ON TABLES TO shop_order, shop_inventory;

-- The contexts' schemas, owned by the migrator; the migrations find them.
CREATE SCHEMA IF NOT EXISTS orders AUTHORIZATION shop_migrator;
CREATE SCHEMA IF NOT EXISTS inventory AUTHORIZATION shop_migrator;
CREATE SCHEMA IF NOT EXISTS access AUTHORIZATION shop_migrator;
CREATE SCHEMA IF NOT EXISTS audit AUTHORIZATION shop_migrator;

-- API keys: every serving role reads them; `shop apikey` writes them as
-- the migrator (SHOP_MIGRATION_DATABASE_URL).
GRANT USAGE ON SCHEMA access TO shop_order, shop_inventory;
ALTER DEFAULT PRIVILEGES FOR ROLE shop_migrator IN SCHEMA access
  GRANT SELECT ON TABLES TO shop_order, shop_inventory;

-- The audit log: both contexts append to it and read it, and may do
-- nothing else (its triggers refuse changes to the migrator as well).
GRANT USAGE ON SCHEMA audit TO shop_order, shop_inventory;
ALTER DEFAULT PRIVILEGES FOR ROLE shop_migrator IN SCHEMA audit
  GRANT SELECT, INSERT ON TABLES TO shop_order, shop_inventory;

GRANT USAGE ON SCHEMA orders TO shop_order;
ALTER DEFAULT PRIVILEGES FOR ROLE shop_migrator IN SCHEMA orders
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO shop_order;
ALTER DEFAULT PRIVILEGES FOR ROLE shop_migrator IN SCHEMA orders
  GRANT USAGE, SELECT ON SEQUENCES TO shop_order;

GRANT USAGE ON SCHEMA inventory TO shop_inventory;
ALTER DEFAULT PRIVILEGES FOR ROLE shop_migrator IN SCHEMA inventory
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO shop_inventory;
ALTER DEFAULT PRIVILEGES FOR ROLE shop_migrator IN SCHEMA inventory
  GRANT USAGE, SELECT ON SEQUENCES TO shop_inventory;
