package events

import "github.com/prometheus/client_golang/prometheus"

var (
	descSubscribers = prometheus.NewDesc("tandem_events_stream_subscribers", "Event stream subscriptions open now.", nil, nil)
	descPublished   = prometheus.NewDesc("tandem_events_published_total", "Events published to the stream hub.", nil, nil)
	descDropped     = prometheus.NewDesc("tandem_events_slow_consumers_dropped_total", "Stream subscribers closed for falling more than their buffer behind.", nil, nil)
)

type collector struct{ h *Hub }

// Collector returns a Prometheus collector of the hub's Stats, to register
// on the process's registry.
func (h *Hub) Collector() prometheus.Collector { return collector{h} }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descSubscribers
	ch <- descPublished
	ch <- descDropped
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.h.Stats()
	ch <- prometheus.MustNewConstMetric(descSubscribers, prometheus.GaugeValue, float64(s.Subscribers))
	ch <- prometheus.MustNewConstMetric(descPublished, prometheus.CounterValue, float64(s.Published))
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(s.Dropped))
}
