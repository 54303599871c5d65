//go:build e2e

package realstack

import (
	"context"
	"regexp"
	"testing"
	"time"

	adminv1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/admin/v1"
)

var skippedRecord = regexp.MustCompile(`skipping a record whose outcome the partition's previous owner published`)

// TestKilledDispatcherRedoesNoPublishedTask: in one partition, a task held
// back (its source endpoint paused) at offset k and a task that runs at
// k+1. The second one's outcome is published in a transaction whose
// committed offset must stay at k. Then the dispatcher is killed with
// SIGKILL and started again: it reads the partition again from k, runs the
// first task and must skip the second, whose finished offset travelled in
// the commit's metadata (read back under read_committed from real Kafka).
func TestKilledDispatcherRedoesNoPublishedTask(t *testing.T) {
	s := NewStack(t, StackOptions{StablePorts: true})
	dir := s.FTPDir()
	RemoveOnSuccess(t, env.VSFTPD.Path(dir), env.PureFTPD.Path(dir))
	PutFile(t, env.PureFTPD.Path(dir+"/held.txt"), []byte("held\n"))
	PutFile(t, env.VSFTPD.Path(dir+"/runs.txt"), []byte("runs\n"))
	ctx := context.Background()
	_, err := s.Dispatcher.API().PauseEndpoint(ctx, &adminv1.PauseEndpointRequest{EndpointId: "pureftpd"})
	must(t, err)

	held := Task{TaskID: s.ID("held"), SrcID: "pureftpd", SrcPath: dir + "/held.txt", DstID: "local", DstPath: "held.txt"}
	runs := Task{TaskID: s.ID("runs"), SrcID: "vsftpd", SrcPath: dir + "/runs.txt", DstID: "local", DstPath: "runs.txt"}
	const partition = 2
	ProduceRaw(t, "ftp-tasks", partition, Record{Key: held.TaskID, Value: held.JSON()})
	ProduceRaw(t, "ftp-tasks", partition, Record{Key: runs.TaskID, Value: runs.JSON()})
	s.CheckSuccess(t, s.Outcome(t, runs.TaskID, 60*time.Second), runs, 5)

	s.Dispatcher.Kill() // the pause dies with it
	s.StartDispatcher()
	s.WaitReady(2, 60*time.Second)
	s.CheckSuccess(t, s.Outcome(t, held.TaskID, 60*time.Second), held, 5)
	time.Sleep(3 * time.Second) // let a second outcome surface
	if n := len(collector.Messages(runs.TaskID, "", s.Since)); n != 1 {
		t.Errorf("%s has %d outcomes after the dispatcher was killed and restarted, want 1", runs.TaskID, n)
	}
	if n := len(collector.Messages(held.TaskID, "", s.Since)); n != 1 {
		t.Errorf("%s has %d outcomes, want 1", held.TaskID, n)
	}
	if s.Dispatcher.CountLog(skippedRecord) != 1 {
		t.Errorf("the restarted dispatcher did not skip the published task once:\n%s", s.Dispatcher.Tail(30))
	}
}
