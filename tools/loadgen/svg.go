package main

import (
	"bytes"
	"fmt"
	"math"
	"time"
)

// latencyCurveSVG draws p50, p99 and p999 latency against the offered rate of each phase
// of a sweep, on a logarithmic latency axis, with the 25 ms target of issue 17 dashed. It
// needs no plotting tool: the figure in docs/perf-throughput.md is this output.
func latencyCurveSVG(phases []phaseResult) []byte {
	const (
		w, h                     = 720, 420
		left, right, top, bottom = 70, 130, 30, 50
	)
	pw, ph := float64(w-left-right), float64(h-top-bottom)
	var maxRate float64
	minMs, maxMs := 1.0, 100.0
	ms := func(d time.Duration) float64 { return max(float64(d)/float64(time.Millisecond), 0.01) }
	for _, p := range phases {
		maxRate = max(maxRate, p.offered)
		for _, d := range []time.Duration{p.p50, p.p99, p.p999} {
			minMs, maxMs = min(minMs, ms(d)), max(maxMs, ms(d))
		}
	}
	maxRate = niceCeil(max(maxRate, 1))
	lo, hi := math.Floor(math.Log10(minMs)), math.Ceil(math.Log10(maxMs))
	x := func(rate float64) float64 { return left + pw*rate/maxRate }
	y := func(v float64) float64 { return top + ph*(1-(math.Log10(v)-lo)/(hi-lo)) }

	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="14">Latency, scheduled send → arrival, vs offered rate (open loop)</text>`+"\n", left)
	// Axes, grid and ticks.
	fmt.Fprintf(&b, `<path d="M%d %d V%.1f H%.1f" stroke="black" fill="none"/>`+"\n", left, top, top+ph, left+pw)
	for e := lo; e <= hi; e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if v < math.Pow(10, lo) || v > math.Pow(10, hi) {
				continue
			}
			fmt.Fprintf(&b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`, left, left+pw, y(v), y(v))
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%g ms</text>`+"\n", left-6, y(v)+4, v)
		}
	}
	for i := 0; i <= 5; i++ {
		r := maxRate * float64(i) / 5
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%.0fk</text>`+"\n", x(r), top+ph+18, r/1000)
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">offered rate (msg/s)</text>`+"\n", left+pw/2, h-8)
	if 25 >= math.Pow(10, lo) && 25 <= math.Pow(10, hi) {
		fmt.Fprintf(&b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#c00" stroke-dasharray="6 4"/><text x="%.1f" y="%.1f" fill="#c00">p99 target 25 ms</text>`+"\n", left, left+pw, y(25), y(25), left+pw+6, y(25)+4)
	}
	series := []struct {
		name, color string
		at          func(phaseResult) time.Duration
	}{
		{"p50", "#1f77b4", func(p phaseResult) time.Duration { return p.p50 }},
		{"p99", "#ff7f0e", func(p phaseResult) time.Duration { return p.p99 }},
		{"p999", "#2ca02c", func(p phaseResult) time.Duration { return p.p999 }},
	}
	for i, s := range series {
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="`, s.color)
		for j, p := range phases {
			if j > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%.1f,%.1f", x(p.offered), y(ms(s.at(p))))
		}
		b.WriteString(`"/>` + "\n")
		for _, p := range phases {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s at %.0f msg/s: %v</title></circle>`, x(p.offered), y(ms(s.at(p))), s.color, s.name, p.offered, s.at(p))
		}
		fmt.Fprintf(&b, "\n"+`<text x="%.1f" y="%d" fill="%s">%s</text>`+"\n", left+pw+6, top+14+16*i, s.color, s.name)
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}
