package main

// The throughput chart, drawn with the standard library only: lines,
// markers and a 5×7 bitmap font.

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"strings"
)

// glyphs is a 5×7 font: seven rows of five pixels per character.
var glyphs = map[rune]string{
	'0': "01110 10001 10011 10101 11001 10001 01110", '1': "00100 01100 00100 00100 00100 00100 01110",
	'2': "01110 10001 00001 00010 00100 01000 11111", '3': "11110 00001 00001 01110 00001 00001 11110",
	'4': "00010 00110 01010 10010 11111 00010 00010", '5': "11111 10000 11110 00001 00001 10001 01110",
	'6': "00110 01000 10000 11110 10001 10001 01110", '7': "11111 00001 00010 00100 01000 01000 01000",
	'8': "01110 10001 10001 01110 10001 10001 01110", '9': "01110 10001 10001 01111 00001 00010 01100",
	'A': "01110 10001 10001 11111 10001 10001 10001", 'B': "11110 10001 10001 11110 10001 10001 11110",
	'C': "01110 10001 10000 10000 10000 10001 01110", 'D': "11100 10010 10001 10001 10001 10010 11100",
	'E': "11111 10000 10000 11110 10000 10000 11111", 'F': "11111 10000 10000 11110 10000 10000 10000",
	'G': "01110 10001 10000 10111 10001 10001 01111", 'H': "10001 10001 10001 11111 10001 10001 10001",
	'I': "01110 00100 00100 00100 00100 00100 01110", 'J': "00111 00010 00010 00010 00010 10010 01100",
	'K': "10001 10010 10100 11000 10100 10010 10001", 'L': "10000 10000 10000 10000 10000 10000 11111",
	'M': "10001 11011 10101 10101 10001 10001 10001", 'N': "10001 10001 11001 10101 10011 10001 10001",
	'O': "01110 10001 10001 10001 10001 10001 01110", 'P': "11110 10001 10001 11110 10000 10000 10000",
	'Q': "01110 10001 10001 10001 10101 10010 01101", 'R': "11110 10001 10001 11110 10100 10010 10001",
	'S': "01111 10000 10000 01110 00001 00001 11110", 'T': "11111 00100 00100 00100 00100 00100 00100",
	'U': "10001 10001 10001 10001 10001 10001 01110", 'V': "10001 10001 10001 10001 10001 01010 00100",
	'W': "10001 10001 10001 10101 10101 10101 01010", 'X': "10001 10001 01010 00100 01010 10001 10001",
	'Y': "10001 10001 01010 00100 00100 00100 00100", 'Z': "11111 00001 00010 00100 01000 10000 11111",
	' ': "00000 00000 00000 00000 00000 00000 00000", '.': "00000 00000 00000 00000 00000 01100 01100",
	',': "00000 00000 00000 00000 01100 00100 01000", '-': "00000 00000 00000 11111 00000 00000 00000",
	'/': "00001 00001 00010 00100 01000 10000 10000", '(': "00010 00100 01000 01000 01000 00100 00010",
	')': "01000 00100 00010 00010 00010 00100 01000", ':': "00000 01100 01100 00000 01100 01100 00000",
	'%': "11000 11001 00010 00100 01000 10011 00011", '=': "00000 00000 11111 00000 11111 00000 00000",
}

type canvas struct{ *image.RGBA }

func (c canvas) rect(x0, y0, x1, y1 int, col color.Color) {
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			c.Set(x, y, col)
		}
	}
}

// text draws s with its top-left at (x, y), each font pixel scale×scale.
func (c canvas) text(x, y int, s string, scale int, col color.Color) {
	for _, r := range strings.ToUpper(s) {
		g, ok := glyphs[r]
		if !ok {
			g = glyphs[' ']
		}
		for row, bits := range strings.Fields(g) {
			for i, b := range bits {
				if b == '1' {
					c.rect(x+i*scale, y+row*scale, x+(i+1)*scale, y+(row+1)*scale, col)
				}
			}
		}
		x += 6 * scale
	}
}

func textWidth(s string, scale int) int { return len(s) * 6 * scale }

// line draws a thick line.
func (c canvas) line(x0, y0, x1, y1, w int, col color.Color) {
	steps := max(abs(x1-x0), abs(y1-y0), 1)
	for i := 0; i <= steps; i++ {
		x := x0 + (x1-x0)*i/steps
		y := y0 + (y1-y0)*i/steps
		c.rect(x-w/2, y-w/2, x-w/2+w, y-w/2+w, col)
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// niceMax rounds v up to 1, 2 or 5 times a power of ten.
func niceMax(v float64) (top, step float64) {
	if v <= 0 {
		return 1, 0.25
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p, m * p / 5
		}
	}
	return 10 * p, 2 * p
}

// writeChart draws small-file throughput against connections: FTP Pooler
// with 1, 2 and 4 agents beside the pooled Go program and curl.
func (r *results) writeChart(path string) error {
	const W, H = 1040, 580
	const left, right, top, bottom = 90, 300, 80, 80
	img := canvas{image.NewRGBA(image.Rect(0, 0, W, H))}
	white, black, grey := color.RGBA{255, 255, 255, 255}, color.RGBA{30, 30, 30, 255}, color.RGBA{220, 220, 220, 255}
	img.rect(0, 0, W, H, white)
	lines := []struct {
		key, label string
		col        color.RGBA
	}{
		{"curl", "curl -Z", color.RGBA{150, 150, 150, 255}},
		{"pooled", "Go jlaffaye pooled", color.RGBA{40, 40, 40, 255}},
		{"ours-1", "FTP Pooler 1 agent", color.RGBA{31, 119, 180, 255}},
		{"ours-2", "FTP Pooler 2 agents", color.RGBA{44, 160, 44, 255}},
		{"ours-4", "FTP Pooler 4 agents", color.RGBA{214, 39, 40, 255}},
	}
	peak := 0.0
	for _, l := range lines {
		for _, c := range scaleConns {
			peak = max(peak, r.scale[l.key][c].med(rate))
		}
	}
	ymax, ystep := niceMax(peak * 1.05)
	px := func(i int) int { return left + 40 + i*(W-left-right-80)/(len(scaleConns)-1) }
	py := func(v float64) int { return H - bottom - int(v/ymax*float64(H-top-bottom)) }
	title := fmt.Sprintf("%s downloads: files/s against connections", r.scaleWorkload.title())
	title = strings.ReplaceAll(title, "×", "x")
	img.text((W-textWidth(title, 3))/2, 15, title, 3, black)
	for v := 0.0; v <= ymax+1e-9; v += ystep {
		y := py(v)
		img.rect(left, y, W-right, y+1, grey)
		lbl := fmt.Sprintf("%.0f", v)
		img.text(left-10-textWidth(lbl, 2), y-7, lbl, 2, black)
	}
	img.rect(left, top, left+2, H-bottom, black)
	img.rect(left, H-bottom, W-right, H-bottom+2, black)
	for i, c := range scaleConns {
		lbl := fmt.Sprint(c)
		img.text(px(i)-textWidth(lbl, 2)/2, H-bottom+10, lbl, 2, black)
	}
	xl := "connections per endpoint"
	img.text(left+(W-left-right-textWidth(xl, 2))/2, H-bottom+40, xl, 2, black)
	img.text(left-40, top-24, "files/s", 2, black)
	for li, l := range lines {
		var pts [][2]int
		for i, c := range scaleConns {
			if v := r.scale[l.key][c].med(rate); v > 0 {
				pts = append(pts, [2]int{px(i), py(v)})
			}
		}
		for i := 1; i < len(pts); i++ {
			img.line(pts[i-1][0], pts[i-1][1], pts[i][0], pts[i][1], 3, l.col)
		}
		for _, p := range pts {
			img.rect(p[0]-5, p[1]-5, p[0]+6, p[1]+6, l.col)
		}
		ly := top + 20 + li*30
		img.rect(W-right+20, ly, W-right+40, ly+14, l.col)
		img.text(W-right+48, ly, l.label, 2, black)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
