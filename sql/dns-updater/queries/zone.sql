-- name: GetZone :one
SELECT * FROM dns_zone WHERE zone = ?;

-- name: CreateZone :exec
INSERT INTO dns_zone (zone, mname, rname, serial, refresh, retry, expire, minimum, ttl, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: UpdateZoneSOA :exec
UPDATE dns_zone
SET mname = ?, rname = ?, serial = ?, refresh = ?, retry = ?, expire = ?, minimum = ?, ttl = ?, updated_at = ?
WHERE zone = ?;

-- name: BumpSerial :one
-- Serial arithmetic (RFC 1982): a serial wraps from 2^32-1 to 1.
UPDATE dns_zone
SET serial = CASE WHEN serial >= 4294967295 THEN 1 ELSE serial + 1 END, updated_at = ?
WHERE zone = ?
RETURNING serial;
