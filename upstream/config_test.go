package upstream

import (
	"testing"
	"time"
)

func TestReconnectDefaults(t *testing.T) {
	for _, tc := range []struct {
		name             string
		min, max         time.Duration
		wantMin, wantMax time.Duration
	}{
		{"both unset", 0, 0, DefaultReconnectMin, DefaultReconnectMax},
		{"only max, above the default min", 0, 2 * time.Second, DefaultReconnectMin, 2 * time.Second},
		{"only max, below the default min", 0, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond},
		{"only min, above the default max", 20 * time.Second, 0, 20 * time.Second, 20 * time.Second},
		{"both set", time.Second, 4 * time.Second, time.Second, 4 * time.Second},
	} {
		c := Config{ReconnectMin: tc.min, ReconnectMax: tc.max}.withDefaults()
		if c.ReconnectMin != tc.wantMin || c.ReconnectMax != tc.wantMax {
			t.Errorf("%s: withDefaults() = min %v max %v, want min %v max %v", tc.name, c.ReconnectMin, c.ReconnectMax, tc.wantMin, tc.wantMax)
		}
	}
}
