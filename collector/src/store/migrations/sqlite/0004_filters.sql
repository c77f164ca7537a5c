-- Issue 6: the department and time-range filters answered from rollups too.
--
-- Per UTC day (of each sighting's last_seen), what was seen of a product through a kind: the
-- first and last seen and the count of a period are sums over its days.
CREATE TABLE usage_day (
    product TEXT NOT NULL,
    kind TEXT NOT NULL,
    day INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (product, kind, day)
) WITHOUT ROWID;
-- How many devices and users were last seen on each day. A device was seen since day D
-- exactly when its last day is D or later, so "since D" is a sum over these rows. The fold
-- moves a device or user from its old last day to its new one.
CREATE TABLE usage_last_kind (
    product TEXT NOT NULL,
    kind TEXT NOT NULL,
    day INTEGER NOT NULL,
    devices INTEGER NOT NULL,
    users INTEGER NOT NULL,
    PRIMARY KEY (product, kind, day)
) WITHOUT ROWID;
CREATE TABLE usage_last_product (
    product TEXT NOT NULL,
    day INTEGER NOT NULL,
    devices INTEGER NOT NULL,
    users INTEGER NOT NULL,
    PRIMARY KEY (product, day)
) WITHOUT ROWID;
-- Each counted key remembers its last day.
ALTER TABLE usage_kind_user ADD COLUMN last_day INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_product_device ADD COLUMN last_day INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_product_user ADD COLUMN last_day INTEGER NOT NULL DEFAULT 0;
-- Per department (of the device's owner, through people): the same numbers as usage_kind and
-- usage_product. A device belongs to one department, so it is new to a department's product
-- exactly when it is new to the product; users need their own keys. Rebuilt from usage_device
-- when people or owners change (rollup_state.departments_dirty).
CREATE TABLE usage_dept_kind (
    department TEXT NOT NULL,
    product TEXT NOT NULL,
    kind TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    count INTEGER NOT NULL,
    devices INTEGER NOT NULL,
    users INTEGER NOT NULL,
    PRIMARY KEY (department, product, kind)
) WITHOUT ROWID;
CREATE TABLE usage_dept_product (
    department TEXT NOT NULL,
    product TEXT NOT NULL,
    devices INTEGER NOT NULL,
    users INTEGER NOT NULL,
    PRIMARY KEY (department, product)
) WITHOUT ROWID;
CREATE TABLE usage_dept_kind_user (
    department TEXT NOT NULL,
    product TEXT NOT NULL,
    kind TEXT NOT NULL,
    os_user TEXT NOT NULL,
    PRIMARY KEY (department, product, kind, os_user)
) WITHOUT ROWID;
CREATE TABLE usage_dept_user (
    department TEXT NOT NULL,
    product TEXT NOT NULL,
    os_user TEXT NOT NULL,
    PRIMARY KEY (department, product, os_user)
) WITHOUT ROWID;
-- usage_dept_product lists each product's departments now.
DROP TABLE usage_department;
-- Fold everything again, split by day: the first fold after this migration rebuilds every
-- rollup from the sightings.
DELETE FROM usage_pending;
DELETE FROM usage_device;
DELETE FROM usage_kind_user;
DELETE FROM usage_product_device;
DELETE FROM usage_product_user;
DELETE FROM usage_kind;
DELETE FROM usage_product;
INSERT INTO usage_pending (device_id, product, kind, os_user, first_seen, last_seen, count)
SELECT device_id, product, kind, os_user, MIN(first_seen), MAX(last_seen), SUM(count)
FROM sightings GROUP BY device_id, product, kind, os_user, last_seen / 86400;
