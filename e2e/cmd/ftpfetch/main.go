// Command ftpfetch is the pooled baseline of `make bench`: a plain Go
// program that moves a list of files over N logged-in sessions, with no
// Kafka and no gRPC — jlaffaye/ftp connections for FTP (the default), or
// pkg/sftp sessions over golang.org/x/crypto/ssh connections with -sftp. It
// logs every session in first, then times the transfers alone, and prints
// one JSON line:
//
//	{"files":2000,"bytes":204800000,"seconds":0.61,"failed":0}
//
// The list has one "REMOTE<TAB>LOCAL" pair per line. Downloads (the
// default) read each remote path into the local file; -put writes each
// local file to the remote path.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type options struct {
	addr, user, pass string
	conns            int
	list             string
	put              bool
	// SFTP: sessions per SSH connection, and the server's known_hosts.
	sftp       bool
	sessions   int
	knownHosts string
}

func main() {
	var o options
	flag.StringVar(&o.addr, "addr", "127.0.0.1:21", "server host:port")
	flag.StringVar(&o.user, "user", "anonymous", "user")
	flag.StringVar(&o.pass, "pass", "", "password")
	flag.IntVar(&o.conns, "conns", 4, "connections (FTP: each moves one file at a time)")
	flag.StringVar(&o.list, "list", "", "file of REMOTE<TAB>LOCAL lines")
	flag.BoolVar(&o.put, "put", false, "upload LOCAL to REMOTE instead of downloading")
	flag.BoolVar(&o.sftp, "sftp", false, "SFTP with pkg/sftp instead of FTP")
	flag.IntVar(&o.sessions, "sessions", 1, "SFTP sessions per SSH connection, each moving one file at a time")
	flag.StringVar(&o.knownHosts, "known-hosts", "", "SFTP: known_hosts file with the server's host key")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "ftpfetch:", err)
		os.Exit(1)
	}
}

type pair struct{ remote, local string }

// mover moves one file at a time over one logged-in session.
type mover interface {
	move(p pair, put bool) (int64, error)
}

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

func run(o options) error {
	files, err := readList(o.list)
	if err != nil {
		return err
	}
	var movers []mover
	var closeAll func()
	if o.sftp {
		movers, closeAll, err = dialSFTP(o)
	} else {
		movers, closeAll, err = dialFTP(o)
	}
	if err != nil {
		return err
	}
	defer closeAll()
	var next, bytes, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for _, m := range movers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(files) {
					return
				}
				k, err := m.move(files[i], o.put)
				bytes.Add(k)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%s: %v", files[i].remote, err))
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start).Seconds()
	out := map[string]any{"files": len(files), "bytes": bytes.Load(), "seconds": took, "failed": failed.Load()}
	if e := firstErr.Load(); e != nil {
		out["error"] = e
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}
