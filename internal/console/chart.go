package console

import (
	"fmt"
	"strconv"
)

// chart is the dashboard's stacked bar chart of attempts per hour by TLS class, laid out here and drawn by
// the template as inline SVG (no script, no external image).
type chart struct {
	Width, Height  int
	Left, Bottom   int
	PlotW, PlotH   int
	Bars           []chartBar
	Ticks          []chartTick
	Total          int
	Hours          []hourStats
	None, Unv, Ver int
	// NoSession counts attempts that never reached an SMTP session (connection refused or timed out, DNS
	// failure, the policy refused every MX): part of the mix, or a dead destination would look healthy.
	NoSession int
}

type chartBar struct {
	X, W  string
	Label string // hour label under every third bar
	LX    string
	Segs  []chartSeg
}

type chartSeg struct {
	Y, H  string
	Class string
	Title string
}

type chartTick struct {
	Y     string
	Label string
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// niceMax rounds n up to 1, 2 or 5 times a power of ten.
func niceMax(n int) int {
	if n <= 4 {
		return 4
	}
	p := 1
	for {
		for _, m := range []int{1, 2, 5} {
			if m*p >= n {
				return m * p
			}
		}
		p *= 10
	}
}

func tlsChart(hours []hourStats) chart {
	ch := chart{Width: 720, Height: 240, Left: 48, Bottom: 28, Hours: hours}
	ch.PlotW, ch.PlotH = ch.Width-ch.Left-8, ch.Height-ch.Bottom-10
	maxN := 0
	for _, h := range hours {
		n := h.Attempts[classNone] + h.Attempts[classUnverified] + h.Attempts[classVerified] + h.Attempts[classNoSession]
		maxN = max(maxN, n)
		ch.Total += n
		ch.None += h.Attempts[classNone]
		ch.Unv += h.Attempts[classUnverified]
		ch.Ver += h.Attempts[classVerified]
		ch.NoSession += h.Attempts[classNoSession]
	}
	top := niceMax(maxN)
	base := float64(ch.Height - ch.Bottom)
	scale := float64(ch.PlotH) / float64(top)
	for i := 0; i <= 4; i++ {
		v := top * i / 4
		ch.Ticks = append(ch.Ticks, chartTick{Y: f1(base - float64(v)*scale), Label: strconv.Itoa(v)})
	}
	slot := float64(ch.PlotW) / float64(len(hours))
	for i, h := range hours {
		x := float64(ch.Left) + float64(i)*slot
		b := chartBar{X: f1(x + slot*0.15), W: f1(slot * 0.7), LX: f1(x + slot/2)}
		if i%3 == 0 {
			b.Label = h.Start.UTC().Format("15:04")
		}
		y := base
		for _, seg := range []struct {
			class, name string
			n           int
		}{
			{"none", "no TLS", h.Attempts[classNone]},
			{"unverified", "unverified TLS", h.Attempts[classUnverified]},
			{"verified", "verified TLS", h.Attempts[classVerified]},
			{"nosession", "no session (never connected or refused before TLS)", h.Attempts[classNoSession]},
		} {
			if seg.n == 0 {
				continue
			}
			hgt := float64(seg.n) * scale
			y -= hgt
			b.Segs = append(b.Segs, chartSeg{Y: f1(y), H: f1(hgt), Class: seg.class,
				Title: fmt.Sprintf("%s from %s UTC: %d attempts over %s", h.Start.UTC().Format("15:04"), h.Start.UTC().Format("Jan 2"), seg.n, seg.name)})
		}
		ch.Bars = append(ch.Bars, b)
	}
	return ch
}
