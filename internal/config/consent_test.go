package config

import (
	"strings"
	"testing"
	"time"
)

func TestConsentAndErasuresConfig(t *testing.T) {
	var e ErasuresConfig
	e.SetDefaults()
	if e.EventRetention != 30*24*time.Hour || e.Validate() != nil {
		t.Fatalf("default retention %v", e.EventRetention)
	}
	for _, d := range []time.Duration{time.Minute, 400 * 24 * time.Hour} {
		if err := (&ErasuresConfig{EventRetention: d}).Validate(); err == nil || !strings.Contains(err.Error(), "erasures.event_retention") {
			t.Errorf("retention %v: %v", d, err)
		}
	}
	ok := ConsentConfig{Purposes: []string{"marketing"}}
	if err := ok.Validate(""); err != nil {
		t.Fatal(err)
	}
	if err := ok.Validate("policy.yaml"); err == nil || !strings.Contains(err.Error(), "consent.purposes: only without a policy file") {
		t.Fatalf("with a policy file: %v", err)
	}
	bad := ConsentConfig{Purposes: []string{"ok", " lead", ""}}
	err := bad.Validate("")
	if err == nil || !strings.Contains(err.Error(), "consent.purposes[1]") || !strings.Contains(err.Error(), "consent.purposes[2]") {
		t.Fatalf("bad purposes: %v", err)
	}
}
