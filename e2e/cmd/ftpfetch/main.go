// Command ftpfetch is the pooled baseline of `make bench`: a plain Go
// program that moves a list of files with jlaffaye/ftp over N logged-in
// connections, with no Kafka and no gRPC. It logs every connection in
// first, then times the transfers alone, and prints one JSON line:
//
//	{"files":2000,"bytes":204800000,"seconds":0.61,"failed":0}
//
// The list has one "REMOTE<TAB>LOCAL" pair per line. Downloads (the
// default) RETR each remote path into the local file; -put STORs each
// local file to the remote path. Copies use a 1 MiB buffer, as a default
// io.Copy from jlaffaye's response leaves half of loopback's bandwidth
// unused.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jlaffaye/ftp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:21", "FTP server host:port")
	user := flag.String("user", "anonymous", "user")
	pass := flag.String("pass", "", "password")
	conns := flag.Int("conns", 4, "connections, each moving one file at a time")
	list := flag.String("list", "", "file of REMOTE<TAB>LOCAL lines")
	put := flag.Bool("put", false, "upload LOCAL to REMOTE instead of downloading")
	flag.Parse()
	if err := run(*addr, *user, *pass, *conns, *list, *put); err != nil {
		fmt.Fprintln(os.Stderr, "ftpfetch:", err)
		os.Exit(1)
	}
}

type pair struct{ remote, local string }

func readList(path string) ([]pair, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []pair
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		r, l, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			continue
		}
		out = append(out, pair{r, l})
	}
	return out, sc.Err()
}

func run(addr, user, pass string, n int, list string, put bool) error {
	files, err := readList(list)
	if err != nil {
		return err
	}
	cs := make([]*ftp.ServerConn, n)
	for i := range cs {
		c, err := ftp.Dial(addr, ftp.DialWithTimeout(10*time.Second))
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		if err := c.Login(user, pass); err != nil {
			return fmt.Errorf("login: %w", err)
		}
		defer c.Quit() //nolint:errcheck // best effort
		cs[i] = c
	}
	var next, bytes, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			for {
				i := int(next.Add(1)) - 1
				if i >= len(files) {
					return
				}
				k, err := move(c, files[i], put, buf)
				bytes.Add(k)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%s: %v", files[i].remote, err))
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start).Seconds()
	out := map[string]any{"files": len(files), "bytes": bytes.Load(), "seconds": took, "failed": failed.Load()}
	if e := firstErr.Load(); e != nil {
		out["error"] = e
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

func move(c *ftp.ServerConn, p pair, put bool, buf []byte) (int64, error) {
	if put {
		f, err := os.Open(p.local)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return 0, err
		}
		return st.Size(), c.Stor(p.remote, f)
	}
	resp, err := c.Retr(p.remote)
	if err != nil {
		return 0, err
	}
	f, err := os.Create(p.local)
	if err != nil {
		resp.Close()
		return 0, err
	}
	n, err := io.CopyBuffer(writerOnly{f}, resp, buf)
	if cerr := resp.Close(); err == nil {
		err = cerr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// writerOnly hides os.File's ReadFrom, which would ignore our buffer.
type writerOnly struct{ io.Writer }
