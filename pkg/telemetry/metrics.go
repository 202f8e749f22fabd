package telemetry

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Outcomes of handling one message, the outcome label of MessagesHandled.
const (
	OutcomeOK         = "ok"
	OutcomeDuplicate  = "duplicate"
	OutcomeDeadLetter = "dead_letter"
	OutcomeError      = "error"
)

// OtherSubject is the subject label once maxSubjects distinct subjects have
// been counted: anyone may publish under lifeboat.event.>, and a metric must
// not grow a series per made-up subject.
const OtherSubject = "other"

// maxSubjects bounds the subject label; the v1 catalog has well under this.
const maxSubjects = 256

// Metrics are the bus and runtime metrics every process exports. The service
// label is a service name (e.g. "restore"), never a host or an id.
type Metrics struct {
	// MessagesHandled counts handled messages by service, subject and outcome
	// (one of the Outcome constants): lifeboat_messages_handled_total. Prefer
	// Handled, which keeps the subject label bounded.
	MessagesHandled *prometheus.CounterVec
	// HandleSeconds is how long handling one message took, by service:
	// lifeboat_message_handle_seconds.
	HandleSeconds *prometheus.HistogramVec
	// OutboxPending is the number of outbox rows not yet acknowledged by
	// JetStream, by service: lifeboat_outbox_pending.
	OutboxPending *prometheus.GaugeVec
	// DeadLetters counts messages sent to the dead-letter stream, by service
	// and reason class (e.g. "malformed", "invalid", "unknown_type"):
	// lifeboat_dead_letters_total.
	DeadLetters *prometheus.CounterVec

	mu       sync.Mutex
	subjects map[string]struct{}
}

// newMetrics registers the Go and process collectors and the lifeboat metrics
// on reg.
func newMetrics(reg *prometheus.Registry) *Metrics {
	m := &Metrics{
		MessagesHandled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lifeboat_messages_handled_total",
			Help: "Messages handled, by service, subject and outcome (ok, duplicate, dead_letter, error).",
		}, []string{"service", "subject", "outcome"}),
		HandleSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "lifeboat_message_handle_seconds",
			Help: "Time to handle one message, from delivery to commit, by service.",
			// 0.5 ms to about 16 s: a handler commits in milliseconds, a
			// stuck one shows in the last buckets.
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"service"}),
		OutboxPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lifeboat_outbox_pending",
			Help: "Outbox events committed but not yet acknowledged by JetStream, by service.",
		}, []string{"service"}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lifeboat_dead_letters_total",
			Help: "Messages sent to the dead-letter stream, by service and reason.",
		}, []string{"service", "reason"}),
		subjects: make(map[string]struct{}),
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.MessagesHandled, m.HandleSeconds, m.OutboxPending, m.DeadLetters,
	)
	return m
}

// Handled counts one handled message, labelling it OtherSubject when too
// many distinct subjects have been seen already.
func (m *Metrics) Handled(service, subject, outcome string) {
	m.MessagesHandled.WithLabelValues(service, m.subjectLabel(subject), outcome).Inc()
}

// subjectLabel is subject while the label set is within maxSubjects.
func (m *Metrics) subjectLabel(subject string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.subjects[subject]; ok {
		return subject
	}
	if len(m.subjects) >= maxSubjects {
		return OtherSubject
	}
	m.subjects[subject] = struct{}{}
	return subject
}
