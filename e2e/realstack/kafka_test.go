//go:build e2e

package realstack

// Kafka as an operator sees it: tasks go in with kcat -P, outcomes come out
// of kcat -C with isolation.level=read_committed. One collector per run
// tails the three outcome topics from the beginning; tests look up their
// own task ids (keys) in it.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Topics of the default configuration (scripts/e2e/kafka.sh creates them).
const (
	TasksTopic    = "ftp-tasks"
	ResultsTopic  = "ftp-results"
	FailuresTopic = "ftp-failures"
	DLQTopic      = "ftp-tasks-dlq"
)

// Message is one record read back by kcat -J.
type Message struct {
	Topic     string
	Partition int32
	Offset    int64
	Time      time.Time // the record's timestamp
	Key       string
	Value     []byte
	Headers   map[string]string
	// Fields is Value decoded as a JSON object (nil if it is not one).
	Fields map[string]any
	// Raw is kcat's line.
	Raw string
}

// Str is a string field ("" when absent or not a string).
func (m Message) Str(k string) string {
	s, _ := m.Fields[k].(string)
	return s
}

// Num is a numeric field and whether it is one.
func (m Message) Num(k string) (float64, bool) {
	f, ok := m.Fields[k].(float64)
	return f, ok
}

func (m Message) String() string {
	return fmt.Sprintf("%s[%d]@%d key=%q %s", m.Topic, m.Partition, m.Offset, m.Key, m.Value)
}

// kcatJSON is kcat -J's envelope.
type kcatJSON struct {
	Topic     string   `json:"topic"`
	Partition int32    `json:"partition"`
	Offset    int64    `json:"offset"`
	TS        int64    `json:"ts"`
	Headers   []string `json:"headers"`
	Key       *string  `json:"key"`
	Payload   *string  `json:"payload"`
}

// Collector holds every outcome and dead letter read since the run began.
type Collector struct {
	mu    sync.Mutex
	cond  *sync.Cond
	byKey map[string][]Message
	n     int
	procs map[string]*exec.Cmd // the running kcat per topic
	errs  []string
	// seen holds topic/partition/offset of every record read: a kcat that
	// ended (the broker went away) is started again from the beginning,
	// and what it reads again is not counted twice.
	seen     map[string]bool
	closing  bool
	restarts []string
}

var collector *Collector

// startCollector runs one kcat consumer per outcome topic:
//
//	kcat -C -b BROKERS -t TOPIC -X isolation.level=read_committed -o beginning -J -u -q
//
// kcat exits when it loses every broker connection (a broker restart); it
// is then started again, from the beginning, and records already read are
// skipped.
func startCollector() error {
	c := &Collector{byKey: map[string][]Message{}, procs: map[string]*exec.Cmd{}, seen: map[string]bool{}}
	c.cond = sync.NewCond(&c.mu)
	for _, topic := range []string{ResultsTopic, FailuresTopic, DLQTopic} {
		out, stderr, err := c.startKcat(topic)
		if err != nil {
			return err
		}
		go c.consume(topic, out, stderr)
	}
	collector = c
	return nil
}

func (c *Collector) startKcat(topic string) (io.Reader, *lockedBuffer, error) {
	cmd := exec.Command("kcat", "-C", "-b", env.KafkaBrokers, "-t", topic,
		"-X", "isolation.level=read_committed", "-o", "beginning", "-J", "-u", "-q")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return nil, nil, fmt.Errorf("collector closed")
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("kcat consumer for %s: %w", topic, err)
	}
	c.procs[topic] = cmd
	return out, stderr, nil
}

// consume reads topic until the collector closes, starting kcat again when
// it ends; when it keeps ending for five minutes it gives up and reports.
func (c *Collector) consume(topic string, out io.Reader, stderr *lockedBuffer) {
	var failingSince time.Time
	for {
		started := time.Now()
		c.read(topic, out)
		c.mu.Lock()
		cmd, closing := c.procs[topic], c.closing
		c.mu.Unlock()
		if closing {
			return
		}
		_ = cmd.Wait()
		why := fmt.Sprintf("%s kcat consumer for %s ended (%v): %s", time.Now().Format("15:04:05"), topic, cmd.ProcessState, strings.TrimSpace(stderr.String()))
		if time.Since(started) > 10*time.Second || failingSince.IsZero() {
			failingSince = time.Now()
		}
		if time.Since(failingSince) > 5*time.Minute {
			c.fail(why + "; it kept ending for five minutes")
			return
		}
		c.mu.Lock()
		c.restarts = append(c.restarts, why)
		c.mu.Unlock()
		time.Sleep(2 * time.Second)
		var err error
		if out, stderr, err = c.startKcat(topic); err != nil {
			c.mu.Lock()
			closing := c.closing
			c.mu.Unlock()
			if !closing {
				c.fail(err.Error())
			}
			return
		}
	}
}

// read adds the records of one kcat run until its output ends.
func (c *Collector) read(topic string, r io.Reader) {
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var j kcatJSON
			if jerr := json.Unmarshal(line, &j); jerr != nil {
				c.fail(fmt.Sprintf("kcat %s: unreadable line %.200q: %v", topic, line, jerr))
			} else {
				c.add(toMessage(j, line))
			}
		}
		if err != nil {
			return
		}
	}
}

// Restarts lists the kcat consumers that ended and were started again.
func (c *Collector) Restarts() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.restarts...)
}

func toMessage(j kcatJSON, raw []byte) Message {
	m := Message{Topic: j.Topic, Partition: j.Partition, Offset: j.Offset, Time: time.UnixMilli(j.TS),
		Headers: map[string]string{}, Raw: string(bytes.TrimSpace(raw))}
	if j.Key != nil {
		m.Key = *j.Key
	}
	if j.Payload != nil {
		m.Value = []byte(*j.Payload)
	}
	for i := 0; i+1 < len(j.Headers); i += 2 {
		m.Headers[j.Headers[i]] = j.Headers[i+1]
	}
	_ = json.Unmarshal(m.Value, &m.Fields)
	return m
}

func (c *Collector) add(m Message) {
	c.mu.Lock()
	id := fmt.Sprintf("%s/%d/%d", m.Topic, m.Partition, m.Offset)
	if c.seen[id] {
		c.mu.Unlock()
		return
	}
	c.seen[id] = true
	c.byKey[m.Key] = append(c.byKey[m.Key], m)
	c.n++
	c.mu.Unlock()
	c.cond.Broadcast()
}

func (c *Collector) fail(s string) {
	c.mu.Lock()
	c.errs = append(c.errs, s)
	c.mu.Unlock()
	c.cond.Broadcast()
}

func (c *Collector) close() {
	c.mu.Lock()
	c.closing = true
	procs := c.procs
	c.mu.Unlock()
	for _, p := range procs {
		_ = p.Process.Kill()
	}
}

// Messages returns what arrived for key on topic ("" for any outcome
// topic) with a timestamp not before since.
func (c *Collector) Messages(key, topic string, since time.Time) []Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.filter(key, topic, since)
}

func (c *Collector) filter(key, topic string, since time.Time) []Message {
	var out []Message
	for _, m := range c.byKey[key] {
		if (topic == "" || m.Topic == topic) && !m.Time.Before(since) {
			out = append(out, m)
		}
	}
	return out
}

// Await waits until every key has at least one message on topic ("" for
// any) since the given time, and returns the first of each. On timeout it
// returns what arrived and the keys still missing.
func (c *Collector) Await(keys []string, topic string, since time.Time, timeout time.Duration) (map[string]Message, []string) {
	deadline := time.Now().Add(timeout)
	stop := time.AfterFunc(timeout, c.cond.Broadcast)
	defer stop.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		got := map[string]Message{}
		var missing []string
		for _, k := range keys {
			if ms := c.filter(k, topic, since); len(ms) > 0 {
				got[k] = ms[0]
			} else {
				missing = append(missing, k)
			}
		}
		if len(missing) == 0 || !time.Now().Before(deadline) || len(c.errs) > 0 {
			return got, missing
		}
		c.cond.Wait()
	}
}

// Errors are the collector's own problems (a kcat consumer died).
func (c *Collector) Errors() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.errs...)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 64<<10 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Record is one message to produce.
type Record struct {
	Key     string
	Value   []byte
	Headers map[string]string
}

// kcatArgs are the producer flags every produce uses: large messages as
// the broker allows (16 MiB), acks from all in-sync replicas.
func kcatProducerArgs(topic string, partition int, headers map[string]string) []string {
	args := []string{"-P", "-b", env.KafkaBrokers, "-t", topic, "-X", "message.max.bytes=16777216", "-X", "acks=all", "-q"}
	if partition >= 0 {
		args = append(args, "-p", fmt.Sprint(partition))
	}
	names := make([]string, 0, len(headers))
	for k := range headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		args = append(args, "-H", k+"="+headers[k])
	}
	return args
}

func runKcat(args []string, stdin []byte) error {
	cmd := exec.Command("kcat", args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	// kcat reports delivery failures on stderr; its exit status is not
	// always non-zero for them.
	if err != nil || bytes.Contains(out, []byte("ERROR")) || bytes.Contains(out, []byte("failed")) {
		return fmt.Errorf("kcat %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// ProduceRaw writes one record with exactly the bytes given, as an
// operator would with kcat:
//
//	kcat -P -b BROKERS -t TOPIC -k KEY [-p N] [-H k=v] FILE     (a non-empty value: the file is the message)
//	printf 'KEY\t\n' | kcat -P -b BROKERS -t TOPIC -K '\t'      (an empty value)
//
// partition < 0 lets kcat's partitioner choose.
func ProduceRaw(t testing.TB, topic string, partition int, r Record) {
	t.Helper()
	args := kcatProducerArgs(topic, partition, r.Headers)
	var stdin []byte
	if len(r.Value) == 0 {
		if strings.ContainsAny(r.Key, "\t\n") {
			t.Fatalf("ProduceRaw: key %q holds a delimiter", r.Key)
		}
		args = append(args, "-K", "\t")
		stdin = []byte(r.Key + "\t\n")
	} else {
		f := filepath.Join(t.TempDir(), "value")
		if err := os.WriteFile(f, r.Value, 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-k", r.Key, f)
	}
	if err := runKcat(args, stdin); err != nil {
		t.Fatal(err)
	}
}

// ProduceLines writes many records through one kcat: each "KEY\tVALUE" line
// is a record (-K '\t', newline-delimited). Values must be one line: JSON
// from json.Marshal is.
func ProduceLines(t testing.TB, topic string, recs []Record) {
	t.Helper()
	var buf bytes.Buffer
	for _, r := range recs {
		if strings.ContainsAny(r.Key, "\t\n") || bytes.ContainsAny(r.Value, "\n") || len(r.Value) == 0 {
			t.Fatalf("ProduceLines: record %q does not fit on one line", r.Key)
		}
		buf.WriteString(r.Key)
		buf.WriteByte('\t')
		buf.Write(r.Value)
		buf.WriteByte('\n')
	}
	args := append(kcatProducerArgs(topic, -1, nil), "-K", "\t")
	if err := runKcat(args, buf.Bytes()); err != nil {
		t.Fatal(err)
	}
}

// Task is a task message; Extra holds further fields (metadata, overwrite).
type Task struct {
	TaskID  string
	SrcID   string
	SrcPath string
	DstID   string
	DstPath string
	Extra   map[string]any
}

// JSON is the task as producers write it.
func (tk Task) JSON() []byte {
	m := map[string]any{"src_id": tk.SrcID, "src_path": tk.SrcPath, "dst_id": tk.DstID, "dst_path": tk.DstPath}
	if tk.TaskID != "" {
		m["task_id"] = tk.TaskID
	}
	for k, v := range tk.Extra {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// SubmitTasks produces tasks to ftp-tasks with kcat, keyed by task id.
func SubmitTasks(t testing.TB, tasks ...Task) {
	t.Helper()
	recs := make([]Record, len(tasks))
	for i, tk := range tasks {
		recs[i] = Record{Key: tk.TaskID, Value: tk.JSON()}
	}
	ProduceLines(t, TasksTopic, recs)
}

// SeekGroupToEnd commits the end offsets of topic for group, so a
// dispatcher starting in that (new) group reads only what is produced from
// now on. The dispatcher's consumer starts a group without offsets at the
// earliest offset, which would replay every earlier test's tasks.
func SeekGroupToEnd(t testing.TB, group, topic string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(env.KafkaBrokers, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("list end offsets of %s: %v", topic, err)
	}
	if err := ends.Error(); err != nil {
		t.Fatalf("list end offsets of %s: %v", topic, err)
	}
	if err := adm.CommitAllOffsets(ctx, group, ends.Offsets()); err != nil {
		t.Fatalf("commit end offsets of %s for group %s: %v", topic, group, err)
	}
}
