package config_test

import (
	"strings"
	"testing"

	"github.com/tokenvault/tokenvault/internal/config"
)

func TestProfilingConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		listen, wantErr string
	}{
		{"", ""},
		{"127.0.0.1:6060", ""},
		{"localhost:0", ""},
		{"[::1]:6060", ""},
		{"0.0.0.0:6060", "profiling.listen: \"0.0.0.0:6060\" is not a loopback address"},
		{"10.0.0.1:6060", "profiling.listen:"},
		{"6060", "profiling.listen: \"6060\" is not host:port"},
	} {
		t.Run(tc.listen, func(t *testing.T) {
			err := (&config.ProfilingConfig{Listen: tc.listen}).Validate()
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.wantErr)) {
				t.Fatalf("Validate(%q) = %v, want %q", tc.listen, err, tc.wantErr)
			}
		})
	}
}
