//go:build e2e

package realstack

// A sampler that counts, on the servers' side, the connections each server
// holds (ss, established sockets on the server's listening port): the chaos
// suite checks max_connections with it under faults, the SFTP tests that
// sessions pack onto SSH connections.

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/proc"
)

// connSampler counts established connections on FTP servers' listening
// ports, server side, every interval.
type connSampler struct {
	ports map[int]string // port -> endpoint id
	stop  chan struct{}
	done  <-chan struct{}

	mu      sync.Mutex
	samples int
	torn    int // server ends left out: their client end was already gone
	// maxWithTorn is the most counted with those ends, for the report.
	maxWithTorn map[string]int
	errs        int
	lastErr     string
	max         map[string]int
	maxAt       map[string]time.Time
	over        map[string]int // samples above the limit
	limits      map[string]int
	// Snapshots show, for the first samples above a limit, which process
	// held each connection (ss -p on the client side).
	Snapshots []string
	// ownerOf names processes by pid, for the snapshots.
	ownerOf func(pid int) string
}

// sampleConnections starts counting; ports maps each server's listening
// port to its endpoint id, limits each endpoint's max_connections.
func sampleConnections(ports map[int]string, limits map[string]int, interval time.Duration, owners func(int) string) *connSampler {
	s := &connSampler{ports: ports, limits: limits, ownerOf: owners, stop: make(chan struct{}),
		max: map[string]int{}, maxWithTorn: map[string]int{}, maxAt: map[string]time.Time{}, over: map[string]int{}}
	s.done = proc.Poll(interval, s.stop, false, s.sample)
	return s
}

// ssFilter is ss's filter for both ends of connections to the servers'
// ports: ( sport = :A or dport = :A or sport = :B ... ).
func (s *connSampler) ssFilter() []string {
	var ports []int
	for p := range s.ports {
		ports = append(ports, p)
	}
	sort.Ints(ports)
	f := []string{"("}
	for i, p := range ports {
		if i > 0 {
			f = append(f, "or")
		}
		f = append(f, "sport", "=", ":"+strconv.Itoa(p), "or", "dport", "=", ":"+strconv.Itoa(p))
	}
	return append(f, ")")
}

// tcpSocket is one line of `ss -Htn`.
type tcpSocket struct{ state, local, peer string }

// sample runs `ss -Htn ( sport = :PORT or dport = :PORT ... )` once: the
// server ends in state ESTAB are the connections a server accepted and
// still holds; the client ends, read in the same pass, tell what each
// looked like from our side at that instant.
func (s *connSampler) sample() {
	args := append([]string{"-Htn"}, s.ssFilter()...)
	out, err := exec.Command("ss", args...).Output()
	counts := map[string]int{}
	byLocal := map[string]tcpSocket{}
	var servers []tcpSocket
	if err == nil {
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			// State Recv-Q Send-Q Local Peer.
			if len(f) < 5 {
				continue
			}
			sock := tcpSocket{state: f[0], local: f[3], peer: f[4]}
			byLocal[sock.local] = sock
			_, port, perr := net.SplitHostPort(sock.local)
			n, _ := strconv.Atoi(port)
			if _, ok := s.ports[n]; ok && perr == nil && sock.state == "ESTAB" {
				servers = append(servers, sock)
			}
		}
	}
	// On loopback every connection a server holds has our end in the same
	// table, in some state (ESTAB, or FIN-WAIT while the server has not
	// read our close yet: those count). A server end whose client end is
	// not there at all was torn down while ss walked the table (a reset,
	// or a dump that read it before the close and the other end after):
	// counting it would count one connection at two moments.
	torn := map[string]int{}
	for _, srv := range servers {
		_, port, _ := net.SplitHostPort(srv.local)
		n, _ := strconv.Atoi(port)
		if _, ok := byLocal[srv.peer]; ok {
			counts[s.ports[n]]++
		} else {
			torn[s.ports[n]]++
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.errs++
		s.lastErr = err.Error()
		return
	}
	s.samples++
	now := time.Now()
	for port, ep := range s.ports {
		n := counts[ep]
		s.torn += torn[ep]
		s.maxWithTorn[ep] = max(s.maxWithTorn[ep], n+torn[ep])
		if n > s.max[ep] {
			s.max[ep], s.maxAt[ep] = n, now
		}
		if n > s.limits[ep] {
			s.over[ep]++
			if len(s.Snapshots) < 6 {
				s.Snapshots = append(s.Snapshots, fmt.Sprintf("%s %s: %d established, limit %d; client ends then: %s; owners just after: %s; server ends whose client end was not ESTAB, just after: %s",
					now.Format("15:04:05.000"), ep, n, s.limits[ep], clientEnds(port, servers, byLocal), s.owners(port), strangers(port, servers, byLocal)))
			}
		}
	}
}

// clientEnds describes, for each server end on port, the state of its
// client end in the same ss pass ("ESTAB" when both are open).
func clientEnds(port int, servers []tcpSocket, byLocal map[string]tcpSocket) string {
	suffix := ":" + strconv.Itoa(port)
	states := map[string]int{}
	for _, srv := range servers {
		if !strings.HasSuffix(srv.local, suffix) {
			continue
		}
		st := "gone"
		if c, ok := byLocal[srv.peer]; ok {
			st = c.state
		}
		states[st]++
	}
	var parts []string
	for _, k := range sortedKeys(states) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, states[k]))
	}
	return strings.Join(parts, " ")
}

// strangers describes, from a second ss pass with -i (timers since the
// last send and receive), the server ends on port whose client end was not
// ESTAB in the first pass: a connection just closing has fresh timers, a
// forgotten one old ones.
func strangers(port int, servers []tcpSocket, byLocal map[string]tcpSocket) string {
	suffix := ":" + strconv.Itoa(port)
	var peers []string
	for _, srv := range servers {
		if c, ok := byLocal[srv.peer]; strings.HasSuffix(srv.local, suffix) && (!ok || c.state != "ESTAB") {
			peers = append(peers, srv.peer)
		}
	}
	if len(peers) == 0 {
		return "none"
	}
	out, err := exec.Command("ss", "-tniH", "(", "sport", "=", ":"+strconv.Itoa(port), ")").Output()
	if err != nil {
		return err.Error()
	}
	var found []string
	lines := strings.Split(string(out), "\n")
	for i, line := range lines {
		for _, p := range peers {
			if strings.Contains(line, " "+p) {
				info := ""
				if i+1 < len(lines) {
					info = strings.Join(strings.Fields(lines[i+1]), " ")
				}
				found = append(found, fmt.Sprintf("[%s: %s]", strings.Join(strings.Fields(line), " "), info))
			}
		}
	}
	if len(found) == 0 {
		return strings.Join(peers, ",") + " already gone"
	}
	return strings.Join(found, " ")
}

// owners counts the client ends of established connections to port by
// process (ss -p, too slow to run every sample).
func (s *connSampler) owners(port int) string {
	out, err := exec.Command("ss", "-tnpH", "state", "established", "(", "dport", "=", ":"+strconv.Itoa(port), ")").Output()
	if err != nil {
		return err.Error()
	}
	by := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		name := "?"
		if i := strings.Index(line, "pid="); i >= 0 {
			f := strings.FieldsFunc(line[i+4:], func(r rune) bool { return r < '0' || r > '9' })
			if len(f) > 0 {
				pid, _ := strconv.Atoi(f[0])
				name = s.ownerOf(pid)
			}
		}
		if line != "" {
			by[name]++
		}
	}
	var parts []string
	for _, k := range sortedKeys(by) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, by[k]))
	}
	return strings.Join(parts, " ")
}

// connReport is the sampler's result.
type connReport struct {
	Samples, Errors int
	Torn            int
	MaxWithTorn     map[string]int
	LastErr         string
	Max             map[string]int
	MaxAt           map[string]time.Time
	Over            map[string]int
}

// Stop ends the sampling and reports.
func (s *connSampler) Stop() connReport {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return connReport{Samples: s.samples, Torn: s.torn, MaxWithTorn: s.maxWithTorn, Errors: s.errs, LastErr: s.lastErr, Max: s.max, MaxAt: s.maxAt, Over: s.over}
}

// sortedKeys lists a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
