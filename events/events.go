// Package events is Lifeboat's v1 event and command catalog: one Go struct per
// message (DESIGN §2), the NATS subjects and CloudEvents types they travel
// under, and the JSON Schemas generated from the structs that every consumer
// validates against before handling a message.
//
// The catalog only grows: fields may be added, never renamed, removed or
// given a new meaning, and every schema accepts properties it does not know,
// so an old consumer keeps working when a newer producer adds fields.
//
// Conventions of the JSON bodies: snake_case names; times are RFC 3339
// strings; durations are whole milliseconds in fields ending in _ms; sizes
// are bytes.
package events

//go:generate go run ./internal/genschema -out schema

import "time"

// Millis is a duration in whole milliseconds, the way durations travel in
// events (JSON fields ending in _ms): plain integers any language can read.
type Millis int64

// MillisOf converts d to whole milliseconds, truncating.
func MillisOf(d time.Duration) Millis { return Millis(d / time.Millisecond) }

// Duration converts m back to a time.Duration.
func (m Millis) Duration() time.Duration { return time.Duration(m) * time.Millisecond }
