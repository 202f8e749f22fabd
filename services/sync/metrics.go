package syncer

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"lifeboat.dev/services/sync/internal/db"
)

// metrics exports each target's state as Prometheus gauges, read from the
// targets table when /metrics is scraped (the same as lifeboat sync
// status): lifeboat_sync_backlog, lifeboat_sync_backlog_bytes,
// lifeboat_sync_lag_seconds, lifeboat_sync_send_error, by target.
type metrics struct{ s *Service }

var (
	backlogDesc      = prometheus.NewDesc("lifeboat_sync_backlog", "Backups waiting to be shipped to the target.", []string{"target"}, nil)
	backlogBytesDesc = prometheus.NewDesc("lifeboat_sync_backlog_bytes", "Bytes of the backups waiting to be shipped to the target.", []string{"target"}, nil)
	lagDesc          = prometheus.NewDesc("lifeboat_sync_lag_seconds", "From the last synced backup's consistent_at to its verification at the target.", []string{"target"}, nil)
	sendErrorDesc    = prometheus.NewDesc("lifeboat_sync_send_error", "1 while the target is stalled: backups wait and it has not advanced within the stall timeout.", []string{"target"}, nil)
)

func (m metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- backlogDesc
	ch <- backlogBytesDesc
	ch <- lagDesc
	ch <- sendErrorDesc
}

func (m metrics) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := db.New(m.s.rt.DB.R).ListTargets(ctx)
	if err != nil {
		return // a scrape during shutdown: no sync series this time
	}
	for _, r := range rows {
		ch <- prometheus.MustNewConstMetric(backlogDesc, prometheus.GaugeValue, float64(r.Backlog), r.Name)
		ch <- prometheus.MustNewConstMetric(backlogBytesDesc, prometheus.GaugeValue, float64(r.BacklogBytes), r.Name)
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(r.LastLagMs)/1000, r.Name)
		ch <- prometheus.MustNewConstMetric(sendErrorDesc, prometheus.GaugeValue, float64(r.Stalled), r.Name)
	}
}
