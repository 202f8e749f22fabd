package events

import "time"

// VolumeOverflow says a volume (a spool of backups awaiting sync, a log
// directory, a disk) is at capacity, which breaks continuous backup.
// volume-monitor emits it and commands a hash backup of the volume's plan.
type VolumeOverflow struct {
	// Volume is the volume's configured name.
	Volume string `json:"volume" jsonschema:"required,minLength=1"`
	// Host is the host the volume is on.
	Host string `json:"host" jsonschema:"required,minLength=1"`
	// Path is the volume's path on Host.
	Path string `json:"path,omitempty"`
	// Plan is the backup plan whose hash backup recovers the volume.
	Plan string `json:"plan,omitempty"`
	// Used is how many bytes are in use.
	Used int64 `json:"used" jsonschema:"minimum=0"`
	// Capacity is the volume's capacity in bytes.
	Capacity int64 `json:"capacity" jsonschema:"minimum=0"`
	// SampledAt is when usage was measured.
	SampledAt time.Time `json:"sampled_at,omitzero"`
}

// VolumeNearFull says a volume has reached its high-water mark.
// volume-monitor emits it once per crossing.
type VolumeNearFull struct {
	// Volume is the volume's configured name.
	Volume string `json:"volume" jsonschema:"required,minLength=1"`
	// Host is the host the volume is on.
	Host string `json:"host" jsonschema:"required,minLength=1"`
	// Path is the volume's path on Host.
	Path string `json:"path,omitempty"`
	// Plan is the backup plan the volume serves.
	Plan string `json:"plan,omitempty"`
	// Used is how many bytes are in use.
	Used int64 `json:"used" jsonschema:"minimum=0"`
	// Capacity is the volume's capacity in bytes.
	Capacity int64 `json:"capacity" jsonschema:"minimum=0"`
	// HighWater is the usage in bytes at which the volume counts as near
	// full.
	HighWater int64 `json:"high_water,omitempty" jsonschema:"minimum=0"`
	// SampledAt is when usage was measured.
	SampledAt time.Time `json:"sampled_at,omitzero"`
}

// VolumeRecovered says an overflowed or near-full volume is usable again:
// after an overflow, once a hash backup of the volume's plan has completed.
// volume-monitor emits it.
type VolumeRecovered struct {
	// Volume is the volume's configured name.
	Volume string `json:"volume" jsonschema:"required,minLength=1"`
	// Host is the host the volume is on.
	Host string `json:"host" jsonschema:"required,minLength=1"`
	// Path is the volume's path on Host.
	Path string `json:"path,omitempty"`
	// Plan is the backup plan the volume serves.
	Plan string `json:"plan,omitempty"`
	// Used is how many bytes are in use.
	Used int64 `json:"used" jsonschema:"minimum=0"`
	// Capacity is the volume's capacity in bytes.
	Capacity int64 `json:"capacity" jsonschema:"minimum=0"`
	// Backup is the hash backup whose completion cleared the overflow.
	Backup string `json:"backup,omitempty"`
	// Reason says what cleared it.
	Reason string `json:"reason,omitempty"`
	// SampledAt is when usage was measured.
	SampledAt time.Time `json:"sampled_at,omitzero"`
}
