package servertest

import "testing"

// TestParseMetrics checks the exposition parser every metrics assertion goes through:
// series with and without labels, comments and blank lines skipped, and a malformed line
// reported rather than skipped (a skipped line would hide a series from a test).
func TestParseMetrics(t *testing.T) {
	m, err := ParseMetrics([]byte("# HELP x\n\nws_connections_active 3\n" +
		`ws_close_total{code="1000"} 2` + "\n  ws_rtt_seconds_sum 0.25  \n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"ws_connections_active": 3, `ws_close_total{code="1000"}`: 2, "ws_rtt_seconds_sum": 0.25}
	if len(m) != len(want) {
		t.Fatalf("parsed %v, want %v", m, want)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	for _, bad := range []string{"novalue\n", "ws_x notanumber\n"} {
		if _, err := ParseMetrics([]byte(bad)); err == nil {
			t.Errorf("ParseMetrics(%q) = nil error, want one", bad)
		}
	}
}
