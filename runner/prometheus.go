package runner

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/weir-runner/weir/runner/engine"
)

// serverMetrics are the server's Prometheus metrics, labelled by job.
type serverMetrics struct {
	reg         *prometheus.Registry
	completed   *prometheus.CounterVec
	failed      *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	lastDur     *prometheus.GaugeVec
	alignment   *prometheus.GaugeVec
	uploaded    *prometheus.GaugeVec
	uploadedSum *prometheus.CounterVec
	size        *prometheus.GaugeVec
	lastID      *prometheus.GaugeVec
	restarts    *prometheus.CounterVec
}

func newServerMetrics() *serverMetrics {
	job := []string{"job"}
	m := &serverMetrics{
		reg:         prometheus.NewRegistry(),
		completed:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_checkpoints_completed_total", Help: "Checkpoints completed."}, job),
		failed:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_checkpoints_failed_total", Help: "Checkpoints aborted (timed out or failed)."}, job),
		duration:    prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "weir_checkpoint_duration_seconds", Help: "Time from trigger to commit of completed checkpoints.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}, job),
		lastDur:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "weir_checkpoint_last_duration_seconds", Help: "Duration of the last completed checkpoint."}, job),
		alignment:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "weir_checkpoint_last_alignment_seconds", Help: "Longest barrier alignment of a subtask in the last completed checkpoint."}, job),
		uploaded:    prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "weir_checkpoint_last_uploaded_bytes", Help: "Bytes uploaded by the last completed checkpoint."}, job),
		uploadedSum: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_checkpoint_uploaded_bytes_total", Help: "Bytes uploaded by completed checkpoints."}, job),
		size:        prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "weir_checkpoint_last_size_bytes", Help: "Full size of the last completed checkpoint."}, job),
		lastID:      prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "weir_checkpoint_last_id", Help: "ID of the last completed checkpoint."}, job),
		restarts:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_job_restarts_total", Help: "Restarts of a job from its latest checkpoint."}, job),
	}
	m.reg.MustRegister(m.completed, m.failed, m.duration, m.lastDur, m.alignment, m.uploaded, m.uploadedSum, m.size, m.lastID, m.restarts)
	return m
}

func (m *serverMetrics) checkpoint(job string, c engine.CheckpointStats) {
	if c.Failed != "" {
		m.failed.WithLabelValues(job).Inc()
		return
	}
	m.completed.WithLabelValues(job).Inc()
	m.duration.WithLabelValues(job).Observe(c.Duration.Seconds())
	m.lastDur.WithLabelValues(job).Set(c.Duration.Seconds())
	m.alignment.WithLabelValues(job).Set(c.Alignment.Seconds())
	m.uploaded.WithLabelValues(job).Set(float64(c.Uploaded))
	m.uploadedSum.WithLabelValues(job).Add(float64(c.Uploaded))
	m.size.WithLabelValues(job).Set(float64(c.FullSize))
	m.lastID.WithLabelValues(job).Set(float64(c.ID))
}

func (m *serverMetrics) restart(job string) { m.restarts.WithLabelValues(job).Inc() }

// Handler serves the metrics in Prometheus' text format.
func (m *serverMetrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// serveMetrics serves /metrics on addr until the server stops; it returns
// the address it listens on.
func (s *Server) serveMetrics(addr string) (string, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("listening for metrics on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.metrics.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.httpSrv = srv
	go func() { // owned by the Server: ends on Stop.
		defer close(s.httpDone)
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("metrics server stopped", "err", err)
		}
	}()
	return lis.Addr().String(), nil
}
