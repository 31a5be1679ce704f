package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// narrator prints the tour. Scenarios print from several goroutines, so
// every line is written whole, under one lock.
type narrator struct {
	mu     sync.Mutex
	w      io.Writer
	origin time.Time // what "+123ms" stamps count from; reset per scenario
}

func newNarrator(w io.Writer) *narrator { return &narrator{w: w, origin: time.Now()} }

// section starts a part of the tour and restarts the clock of its stamps.
func (n *narrator) section(num, of int, title string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.origin = time.Now()
	head := fmt.Sprintf("== %d/%d  %s ", num, of, title)
	fmt.Fprintf(n.w, "\n%s%s\n", head, strings.Repeat("=", max(0, 72-len(head))))
}

// say prints narration: what is about to happen and why. Paragraphs
// (separated by a blank line) are re-wrapped to fit 76 columns; a leading
// newline prints a blank line first.
func (n *narrator) say(format string, args ...any) {
	text := fmt.Sprintf(format, args...)
	n.mu.Lock()
	defer n.mu.Unlock()
	if strings.HasPrefix(text, "\n") {
		fmt.Fprintln(n.w)
	}
	for i, para := range strings.Split(strings.TrimSpace(text), "\n\n") {
		if i > 0 {
			fmt.Fprintln(n.w)
		}
		for _, line := range wrap(para, 73) {
			fmt.Fprintf(n.w, "   %s\n", line)
		}
	}
}

// wrap breaks text into lines of at most width runes, at spaces.
func wrap(text string, width int) []string {
	var lines []string
	var cur strings.Builder
	for _, w := range strings.Fields(text) {
		if cur.Len() > 0 && len([]rune(cur.String()))+1+len([]rune(w)) > width {
			lines = append(lines, cur.String())
			cur.Reset()
		}
		if cur.Len() > 0 {
			cur.WriteByte(' ')
		}
		cur.WriteString(w)
	}
	if cur.Len() > 0 {
		lines = append(lines, cur.String())
	}
	return lines
}

// event prints something that happened, stamped with the time since the
// section started.
func (n *narrator) event(format string, args ...any) {
	n.eventAt(time.Now(), format, args...)
}

// eventAt is event with the time it happened, for events recorded
// elsewhere and printed later.
func (n *narrator) eventAt(at time.Time, format string, args ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	fmt.Fprintf(n.w, "   %8s  %s\n", "+"+ms(at.Sub(n.origin)), fmt.Sprintf(format, args...))
}

// stamp returns t as the section's events show it: "+123ms".
func (n *narrator) stamp(t time.Time) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return "+" + ms(t.Sub(n.origin))
}

// table prints rows under a header, columns padded to fit.
func (n *narrator) table(header []string, rows [][]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	writeTable(n.w, "   ", header, rows)
}

func writeTable(w io.Writer, indent string, header []string, rows [][]string) {
	width := make([]int, len(header))
	for _, r := range append([][]string{header}, rows...) {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	line := func(r []string) {
		var b strings.Builder
		b.WriteString(indent)
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", width[i]-len([]rune(c))+2))
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(header)
	rule := make([]string, len(header))
	for i := range rule {
		rule[i] = strings.Repeat("-", width[i])
	}
	line(rule)
	for _, r := range rows {
		line(r)
	}
}

// progress prints status() once a second until stop is called, so that a
// wait longer than a second never looks like a hang. stop waits for the
// printing goroutine to end.
func (n *narrator) progress(what string, status func() string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	start := time.Now()
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				s := what
				if status != nil {
					s += ": " + status()
				}
				n.mu.Lock()
				fmt.Fprintf(n.w, "   %8s  ... %s (%ds)\n", "", s, int(time.Since(start).Seconds()))
				n.mu.Unlock()
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
}

// ms formats a duration for people: "0.42ms", "3.1ms", "250ms", "1.25s".
func ms(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + ms(-d)
	case d == 0:
		return "0ms"
	case d < time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}
