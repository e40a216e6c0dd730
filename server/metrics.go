package server

import (
	"io"
	"strconv"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/wsreactor/wsreactor/codec"
)

// Metric names are part of DESIGN.md's contract.
const (
	mActive          = "ws_connections_active"
	mOpened          = "ws_connections_opened_total"
	mClosed          = "ws_connections_closed_total"
	mClose           = "ws_close_total"
	mRTT             = "ws_heartbeat_rtt_seconds"
	mReceived        = "ws_messages_received_total"
	mSent            = "ws_messages_sent_total"
	mFailed          = "ws_messages_failed_total"
	mSendBuffer      = "ws_send_buffer_bytes"
	mFanoutLag       = "ws_fanout_lag_seconds"
	mUpgradeFailures = "ws_upgrade_failures_total"
	mZombies         = "ws_zombies_reaped_total"
	mSlowConsumers   = "ws_slow_consumers_total"
)

// closeLabels is the closed set of ws_close_total's code label: every code the server
// sends, every code RFC 6455 lets a peer send in the 1000-2999 range, and "other" for
// the application codes (3000-4999) a peer may choose, so a hostile client cannot create
// unbounded series.
var closeLabels = []codec.CloseCode{
	1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
	codec.CloseSlowConsumer, codec.CloseIdleTimeout, codec.CloseTokenExpired, codec.CloseRateLimited,
}

// upgradeReasons is the closed set of ws_upgrade_failures_total's reason label.
var upgradeReasons = []string{"bad_request", "method", "version", "too_large", "timeout", "auth", "origin", "capacity"}

// rttBuckets spans loopback (100 µs) to a bad mobile link (10 s).
var rttBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// serverMetrics is the server's metric set; it implements loop.Observer. Every series is
// created up front so it is exposed, zero-valued, from the first scrape.
type serverMetrics struct {
	set           *metrics.Set
	opened        *metrics.Counter
	closed        *metrics.Counter
	closeByCode   map[codec.CloseCode]*metrics.Counter
	closeOther    *metrics.Counter
	rtt           *metrics.PrometheusHistogram
	received      *metrics.Counter
	sent          *metrics.Counter
	failed        *metrics.Counter
	fanoutLag     *metrics.PrometheusHistogram
	upgradeFailed map[string]*metrics.Counter
	zombies       *metrics.Counter
	slow          *metrics.Counter
	// channelLimited counts pubs refused by -channel-rate (not in DESIGN.md's list;
	// -client-rate closes show as ws_close_total{code="4029"}).
	channelLimited *metrics.Counter
}

func newServerMetrics(active, sendBuffer func() float64) *serverMetrics {
	s := metrics.NewSet()
	m := &serverMetrics{
		set:            s,
		opened:         s.NewCounter(mOpened),
		closed:         s.NewCounter(mClosed),
		closeByCode:    make(map[codec.CloseCode]*metrics.Counter, len(closeLabels)),
		closeOther:     s.NewCounter(mClose + `{code="other"}`),
		rtt:            s.NewPrometheusHistogramExt(mRTT, rttBuckets),
		received:       s.NewCounter(mReceived),
		sent:           s.NewCounter(mSent),
		failed:         s.NewCounter(mFailed),
		fanoutLag:      s.NewPrometheusHistogramExt(mFanoutLag, rttBuckets),
		upgradeFailed:  make(map[string]*metrics.Counter, len(upgradeReasons)),
		zombies:        s.NewCounter(mZombies),
		slow:           s.NewCounter(mSlowConsumers),
		channelLimited: s.NewCounter("ws_channel_rate_limited_total"),
	}
	s.NewGauge(mActive, active)
	s.NewGauge(mSendBuffer, sendBuffer)
	for _, c := range closeLabels {
		m.closeByCode[c] = s.NewCounter(mClose + `{code="` + strconv.Itoa(int(c)) + `"}`)
	}
	for _, r := range upgradeReasons {
		m.upgradeFailed[r] = s.NewCounter(mUpgradeFailures + `{reason="` + r + `"}`)
	}
	return m
}

// writePrometheus writes the server's series, then the process and Go runtime series.
func (m *serverMetrics) writePrometheus(w io.Writer) {
	m.set.WritePrometheus(w)
	metrics.WriteProcessMetrics(w)
}

func (m *serverMetrics) Opened() { m.opened.Inc() }

func (m *serverMetrics) Closed(code codec.CloseCode, byPeer bool) {
	m.closed.Inc()
	// 3000-4999 from a client is its own application's code, whatever the number: 4029
	// from a client is not this server's rate limit.
	if byPeer && code >= 3000 && code <= 4999 {
		m.closeOther.Inc()
		return
	}
	if c := m.closeByCode[code]; c != nil {
		c.Inc()
		return
	}
	m.closeOther.Inc()
}

func (m *serverMetrics) UpgradeFailed(reason string) {
	if c := m.upgradeFailed[reason]; c != nil {
		c.Inc()
		return
	}
	m.upgradeFailed["bad_request"].Inc()
}

func (m *serverMetrics) HeartbeatRTT(d time.Duration) { m.rtt.Update(d.Seconds()) }
func (m *serverMetrics) Received(n int)               { m.received.Add(n) }
func (m *serverMetrics) Sent(n int)                   { m.sent.Add(n) }
func (m *serverMetrics) ZombieReaped()                { m.zombies.Inc() }
func (m *serverMetrics) SlowConsumer()                { m.slow.Inc() }
