package main

import (
	"bytes"
	"flag"
	"slices"
	"strings"
	"testing"
)

func TestDecodeBlobAlphabets(t *testing.T) {
	want := []byte{0xfb, 0xff, 0xbf, 0x01} // every 6-bit group of the first three bytes is 62 or 63
	for _, in := range []string{"-_-_AQ", "-_-_AQ==", "+/+/AQ", "+/+/AQ==", " +/+/AQ==\n"} {
		got, err := decodeBlob(in)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("decodeBlob(%q) = %x, %v; want %x", in, got, err, want)
		}
	}
	for _, in := range []string{"-_+/AQ", "!!!"} { // mixed alphabets, not base64
		if _, err := decodeBlob(in); err == nil {
			t.Errorf("decodeBlob(%q) succeeded", in)
		}
	}
}

func TestParseFlagsInterspersed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		pos  []string
		subj string
	}{
		{[]string{"--subject", "s", "v1", "v2"}, []string{"v1", "v2"}, "s"},
		{[]string{"v1", "--subject", "s", "v2"}, []string{"v1", "v2"}, "s"},
		{[]string{"v1", "v2", "--subject=s"}, []string{"v1", "v2"}, "s"},
		{[]string{"-", "--subject", "s"}, []string{"-"}, "s"},
		{[]string{"--subject", "s", "--", "--x", "-y"}, []string{"--x", "-y"}, "s"},
		{[]string{"v1", "--", "--subject", "t"}, []string{"v1", "--subject", "t"}, ""},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		subject := fs.String("subject", "", "")
		if err := parseFlags(fs, tc.args); err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if !slices.Equal(fs.Args(), tc.pos) || *subject != tc.subj {
			t.Errorf("%q: args %q subject %q; want %q, %q", tc.args, fs.Args(), *subject, tc.pos, tc.subj)
		}
	}
}

func TestHelpGoesToStdout(t *testing.T) {
	var stdout, stderr bytes.Buffer
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(streams{Writer: &stderr, stdout: &stdout})
	fs.String("subject", "", "data subject id")
	if err := parseFlags(fs, []string{"-h"}); err != flag.ErrHelp {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	if !strings.Contains(stdout.String(), "-subject") || stderr.Len() != 0 {
		t.Errorf("stdout %q, stderr %q; want the help on stdout only", stdout.String(), stderr.String())
	}
	stdout.Reset()
	err := parseFlags(fs, []string{"--nope"})
	if err == nil || !strings.Contains(err.Error(), "-nope") {
		t.Fatalf("unknown flag: %v", err)
	}
	// The usage on stderr; the error itself once, by main, below it.
	if !strings.Contains(stderr.String(), "-subject") || strings.Contains(stderr.String(), "-nope") || stdout.Len() != 0 {
		t.Errorf("stdout %q, stderr %q; want the usage on stderr only, without the error", stdout.String(), stderr.String())
	}
}

func TestProgressPlainLines(t *testing.T) {
	var w bytes.Buffer // not a terminal
	p := newProgress(&w, "backing up")
	for i := int64(0); i <= 1000; i++ {
		p.update(i, 1000)
	}
	p.end()
	out := w.String()
	if strings.Contains(out, "\r") {
		t.Fatalf("\\r in non-terminal progress: %q", out)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 11 || lines[0] != "backing up: 0/1000 (0%)" || lines[10] != "backing up: 1000/1000 (100%)" {
		t.Errorf("got %d lines %q; want one per tenth, 0%% to 100%%", len(lines), lines)
	}
}
