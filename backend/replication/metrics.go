package replication

import "github.com/prometheus/client_golang/prometheus"

type nodeMetrics struct {
	failovers prometheus.Counter
	failbacks prometheus.Counter
	degraded  prometheus.Counter
	lag       prometheus.Gauge
	batchSize prometheus.Histogram
}

func newMetrics(n *Node, reg prometheus.Registerer) *nodeMetrics {
	m := &nodeMetrics{
		failovers: prometheus.NewCounter(prometheus.CounterOpts{Name: "tandem_failover_sessions_total", Help: "Sessions this server took over from a failed or relinquishing owner."}),
		failbacks: prometheus.NewCounter(prometheus.CounterOpts{Name: "tandem_failback_sessions_total", Help: "Sessions this server pushed back to their returning home server."}),
		degraded:  prometheus.NewCounter(prometheus.CounterOpts{Name: "tandem_replication_degraded_writes_total", Help: "Sync writes acknowledged while held by this server only (no live backup)."}),
		lag:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "tandem_replication_lag_seconds", Help: "Age of the oldest async write in the last batch when the backup acknowledged it."}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tandem_replication_batch_size", Help: "Records per replication round trip.", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000}}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.failovers, m.failbacks, m.degraded, m.lag, m.batchSize)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tandem_sessions", Help: "Sessions this server is primary for."}, func() float64 {
		o, _, _ := n.Counts()
		return float64(o)
	}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tandem_backup_sessions", Help: "Session copies this server holds for its peers."}, func() float64 {
		_, c, _ := n.Counts()
		return float64(c)
	}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tandem_unprotected_sessions", Help: "Owned sessions without a copy on a live backup."}, func() float64 {
		_, _, u := n.Counts()
		return float64(u)
	}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tandem_replication_queue", Help: "Replication items queued for backups."}, func() float64 {
		n.mu.Lock()
		defer n.mu.Unlock()
		q := 0
		for _, s := range n.senders {
			q += len(s.q)
		}
		return float64(q + n.dirtyLen())
	}))
	return m
}
