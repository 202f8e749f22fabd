-- name: ListRecords :many
SELECT * FROM dns_records WHERE zone = ? ORDER BY name, type, value;

-- name: ListTypesAt :many
SELECT DISTINCT type FROM dns_records WHERE zone = ? AND name = ? ORDER BY type;

-- name: InsertRecord :exec
INSERT INTO dns_records (zone, name, type, value, ttl) VALUES (?, ?, ?, ?, ?);

-- name: DeleteRRset :exec
DELETE FROM dns_records WHERE zone = ? AND name = ? AND type = ?;

-- name: DeleteZoneRecords :exec
DELETE FROM dns_records WHERE zone = ?;

-- name: ListRRset :many
SELECT * FROM dns_records WHERE zone = ? AND name = ? AND type = ? ORDER BY value;
