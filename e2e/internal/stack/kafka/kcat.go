package kafka

// Kafka as an operator sees it: records go in with kcat -P, outcomes come
// out of kcat -C with isolation.level=read_committed.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ftp-pooler/ftp-pooler/e2e/internal/stack/proc"
)

// Kcat runs kcat against Brokers (host:port[,host:port]).
type Kcat struct{ Brokers string }

// producerArgs are the flags every produce uses: messages as large as the
// broker allows (16 MiB), acks from all in-sync replicas. partition < 0
// lets kcat's partitioner choose.
func (k Kcat) producerArgs(topic string, partition int, headers map[string]string) []string {
	args := []string{"-P", "-b", k.Brokers, "-t", topic, "-X", "message.max.bytes=16777216", "-X", "acks=all", "-q"}
	if partition >= 0 {
		args = append(args, "-p", fmt.Sprint(partition))
	}
	names := make([]string, 0, len(headers))
	for name := range headers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		args = append(args, "-H", name+"="+headers[name])
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

// Produce writes one record with exactly the bytes given:
//
//	kcat -P -b BROKERS -t TOPIC -k KEY [-p N] [-H k=v] FILE     (a non-empty value: the file is the message)
//	printf 'KEY\t\n' | kcat -P -b BROKERS -t TOPIC -K '\t'      (an empty value)
func (k Kcat) Produce(topic string, partition int, r Record) error {
	args := k.producerArgs(topic, partition, r.Headers)
	if len(r.Value) == 0 {
		if strings.ContainsAny(r.Key, "\t\n") {
			return fmt.Errorf("kcat: key %q holds a delimiter", r.Key)
		}
		return runKcat(append(args, "-K", "\t"), []byte(r.Key+"\t\n"))
	}
	f, err := os.CreateTemp("", "kcat-value-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(r.Value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return runKcat(append(args, "-k", r.Key, f.Name()), nil)
}

// ProduceLines writes many records through one kcat: each "KEY\tVALUE"
// line is a record (-K '\t', newline-delimited). Values must be one line:
// JSON from json.Marshal is.
func (k Kcat) ProduceLines(topic string, recs []Record) error {
	var buf bytes.Buffer
	for _, r := range recs {
		if strings.ContainsAny(r.Key, "\t\n") || bytes.ContainsAny(r.Value, "\n") || len(r.Value) == 0 {
			return fmt.Errorf("kcat: record %q does not fit on one line", r.Key)
		}
		buf.WriteString(r.Key)
		buf.WriteByte('\t')
		buf.Write(r.Value)
		buf.WriteByte('\n')
	}
	return runKcat(append(k.producerArgs(topic, -1, nil), "-K", "\t"), buf.Bytes())
}

// Collector tails topics from the beginning into Outcomes, one kcat each:
//
//	kcat -C -b BROKERS -t TOPIC -X isolation.level=read_committed -o beginning -J -u -q
//
// kcat exits when it loses every broker connection (a broker restart); it
// is then started again, from the beginning, and the store skips records
// it holds already.
type Collector struct {
	*Outcomes
	k Kcat

	mu       sync.Mutex
	procs    map[string]*exec.Cmd // the running kcat per topic
	closing  bool
	restarts []string
}

// Collect starts a Collector of topics.
func (k Kcat) Collect(topics ...string) (*Collector, error) {
	c := &Collector{Outcomes: NewOutcomes(), k: k, procs: map[string]*exec.Cmd{}}
	for _, topic := range topics {
		out, stderr, err := c.start(topic)
		if err != nil {
			c.Close()
			return nil, err
		}
		go c.consume(topic, out, stderr)
	}
	return c, nil
}

func (c *Collector) start(topic string) (io.Reader, *proc.Capture, error) {
	cmd := exec.Command("kcat", "-C", "-b", c.k.Brokers, "-t", topic,
		"-X", "isolation.level=read_committed", "-o", "beginning", "-J", "-u", "-q")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	stderr := &proc.Capture{}
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
func (c *Collector) consume(topic string, out io.Reader, stderr *proc.Capture) {
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
			c.Fail(why + "; it kept ending for five minutes")
			return
		}
		c.mu.Lock()
		c.restarts = append(c.restarts, why)
		c.mu.Unlock()
		time.Sleep(2 * time.Second)
		var err error
		if out, stderr, err = c.start(topic); err != nil {
			c.mu.Lock()
			closing := c.closing
			c.mu.Unlock()
			if !closing {
				c.Fail(err.Error())
			}
			return
		}
	}
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

// read adds the records of one kcat run until its output ends.
func (c *Collector) read(topic string, r io.Reader) {
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var j kcatJSON
			if jerr := json.Unmarshal(line, &j); jerr != nil {
				c.Fail(fmt.Sprintf("kcat %s: unreadable line %.200q: %v", topic, line, jerr))
			} else {
				c.Add(fromKcat(j, line))
			}
		}
		if err != nil {
			return
		}
	}
}

func fromKcat(j kcatJSON, raw []byte) Message {
	m := Message{Topic: j.Topic, Partition: j.Partition, Offset: j.Offset, Time: time.UnixMilli(j.TS), Seen: time.Now(),
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
	m.decode()
	return m
}

// Restarts lists the kcat consumers that ended and were started again.
func (c *Collector) Restarts() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.restarts...)
}

// Close stops the kcat consumers.
func (c *Collector) Close() {
	c.mu.Lock()
	c.closing = true
	procs := c.procs
	c.mu.Unlock()
	for _, p := range procs {
		_ = p.Process.Kill()
	}
}
