package main

// With -pprof, every measured run of FTP Pooler also leaves CPU profiles
// of the dispatcher and each agent (their metrics.pprof endpoints), so a
// missed target can be explained from the same run that missed it.

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// profiler collects one run's profiles; a nil profiler does nothing.
type profiler struct {
	wg   sync.WaitGroup
	errs chan error
}

// startProfiles asks every process of s for a CPU profile of the next
// -pprof-seconds and a heap profile after it, written under -pprof as
// <run>-<process>.cpu.pprof and .heap.pprof.
func (b *bench) startProfiles(s *pooler, run string) *profiler {
	if b.opts.pprofDir == "" {
		return nil
	}
	p := &profiler{errs: make(chan error, 1+len(s.Agents))}
	targets := map[string]string{"dispatcher": s.Dispatcher.HTTP}
	for i, a := range s.Agents {
		targets[fmt.Sprintf("agent-%d", i+1)] = a.HTTP
	}
	for name, addr := range targets {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			path := filepath.Join(b.opts.pprofDir, run+"-"+name+".cpu.pprof")
			url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, b.opts.pprofSeconds)
			if err := fetchTo(url, path, time.Duration(b.opts.pprofSeconds+30)*time.Second); err != nil {
				p.errs <- fmt.Errorf("%s profile: %w", name, err)
				return
			}
			// The heap as the CPU profile ends: what is live mid-run, for
			// a missed memory target.
			heap := filepath.Join(b.opts.pprofDir, run+"-"+name+".heap.pprof")
			if err := fetchTo("http://"+addr+"/debug/pprof/heap", heap, 30*time.Second); err != nil {
				p.errs <- fmt.Errorf("%s heap profile: %w", name, err)
			}
		}()
	}
	return p
}

// wait waits for the profiles and logs what failed.
func (p *profiler) wait(b *bench) {
	if p == nil {
		return
	}
	p.wg.Wait()
	close(p.errs)
	for err := range p.errs {
		b.logf("pprof: %v", err)
	}
}

func fetchTo(url, path string, timeout time.Duration) error {
	c := http.Client{Timeout: timeout}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
