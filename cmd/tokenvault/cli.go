package main

// What every command shares about the terminal: flag parsing (help on
// stdout, flags anywhere on the line) and progress output.

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// streams is the stderr run gives the commands: it still writes to
// stderr, but carries stdout along so parseFlags can print a requested
// help text there (help is output the user asked for, and "tokenvault
// CMD -h | less" should work) while flag errors stay on stderr.
type streams struct {
	io.Writer           // stderr
	stdout    io.Writer // where -h/--help goes
}

// parseFlags parses args with fs, accepting flags after positional
// arguments too ("tokenize 4111… --subject s --kind pan"): Go's flag
// package stops at the first non-flag, which left "--subject" as a value
// and then reported "--subject is required". A "--" still ends the flags,
// so a value that starts with "-" can be given after it; "-" alone is a
// value (standard input). Afterwards fs.Args() holds the positional
// arguments in their order.
func parseFlags(fs *flag.FlagSet, args []string) error {
	out := fs.Output()
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	err := parseInterspersed(fs, args)
	fs.SetOutput(out)
	if errors.Is(err, flag.ErrHelp) {
		if s, ok := out.(streams); ok {
			out = s.stdout
		}
	}
	b := buf.Bytes()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		// The flag package prints the error above the usage, and main
		// prints it again below: once, after the usage, is enough.
		b = bytes.TrimPrefix(b, []byte(err.Error()+"\n"))
	}
	_, _ = out.Write(b)
	return err
}

func parseInterspersed(fs *flag.FlagSet, args []string) error {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		i := 0
		for i < len(rest) && !looksLikeFlag(rest[i]) {
			i++
		}
		positional = append(positional, rest[:i]...)
		if i == len(rest) {
			break
		}
		args = rest[i:]
	}
	// Leave fs.Args() == positional: after "--" nothing is a flag.
	return fs.Parse(append([]string{"--"}, positional...))
}

func looksLikeFlag(a string) bool { return len(a) > 1 && a[0] == '-' }

// isTerminal reports whether w is a terminal (a character device), where
// progress may redraw one line with "\r". Anywhere else (a log file, a
// pipe, a CI job) "\r" frames pile up into one unreadable line.
func isTerminal(w io.Writer) bool {
	if s, ok := w.(streams); ok {
		w = s.Writer
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progress reports how far a long operation got on w: on a terminal a bar
// redrawn in place, elsewhere a plain line each time another tenth is
// done (and at the end), so logs stay readable.
type progress struct {
	w     io.Writer
	label string
	tty   bool
	shown int64 // tenths printed so far (plain lines), -1 before the first
	drew  bool
}

func newProgress(w io.Writer, label string) *progress {
	return &progress{w: w, label: label, tty: isTerminal(w), shown: -1}
}

func (p *progress) update(done, total int64) {
	if p.tty {
		fmt.Fprintf(p.w, "\r%s: %s", p.label, bar(done, total))
		p.drew = true
		return
	}
	tenth := int64(0)
	if total > 0 {
		tenth = min(done, total) * 10 / total
	}
	if tenth <= p.shown {
		return
	}
	p.shown = tenth
	if total > 0 {
		fmt.Fprintf(p.w, "%s: %d/%d (%d%%)\n", p.label, min(done, total), total, min(done, total)*100/total)
	} else {
		fmt.Fprintf(p.w, "%s: %d\n", p.label, done)
	}
}

// end finishes the bar's line on a terminal.
func (p *progress) end() {
	if p.drew {
		fmt.Fprintln(p.w)
	}
}

// bar draws a text progress bar.
func bar(done, total int64) string {
	const width = 30
	if total <= 0 {
		return fmt.Sprintf("%d", done)
	}
	n := int(min(done, total) * width / total)
	return fmt.Sprintf("[%s%s] %d/%d (%d%%)", strings.Repeat("#", n), strings.Repeat(".", width-n), done, total, min(done, total)*100/total)
}
