//go:build e2e

package realstack

import (
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUploadIntoNewDirectory uploads local files to vsftpd into
// directories that do not exist yet.
func TestUploadIntoNewDirectory(t *testing.T) {
	s := NewStack(t, StackOptions{})
	dir := s.FTPDir()
	RemoveOnSuccess(t, env.VSFTPD.Path(dir))
	csv := []byte("id,amount\n1,42\n2,17\n")
	csvSum := PutFile(t, filepath.Join(s.Base, "outbox/report.csv"), csv)
	binSum := PutRandomFile(t, filepath.Join(s.Base, "outbox/blob.bin"), 300<<10, 1)
	tasks := []Task{
		{TaskID: s.ID("upload-csv"), SrcID: "local", SrcPath: "outbox/report.csv", DstID: "vsftpd", DstPath: dir + "/incoming/2025-11-25/report.csv"},
		// An absolute local path under base_path is used as is.
		{TaskID: s.ID("upload-bin"), SrcID: "local", SrcPath: filepath.Join(s.Base, "outbox/blob.bin"), DstID: "vsftpd", DstPath: dir + "/a/b/c/blob.bin"},
	}
	for _, tk := range tasks {
		if _, err := os.Stat(path.Dir(env.VSFTPD.Path(tk.DstPath))); !os.IsNotExist(err) {
			t.Fatalf("%s exists before the test", path.Dir(tk.DstPath))
		}
	}
	got := s.Run(t, 60*time.Second, tasks...)
	s.CheckSuccess(t, got[tasks[0].TaskID], tasks[0], int64(len(csv)))
	s.CheckSuccess(t, got[tasks[1].TaskID], tasks[1], 300<<10)
	CheckFile(t, env.VSFTPD.Path(tasks[0].DstPath), csvSum, int64(len(csv)))
	CheckFile(t, env.VSFTPD.Path(tasks[1].DstPath), binSum, 300<<10)
	// Written by the FTP user, not by root behind the server's back.
	uid, _ := owner(t, env.VSFTPD.Home)
	if u, _ := owner(t, env.VSFTPD.Path(tasks[1].DstPath)); u != uid {
		t.Errorf("uploaded file owned by uid %d, want the FTP user's %d", u, uid)
	}
	if tmp := TempFiles(env.VSFTPD.Path(dir)); len(tmp) > 0 {
		t.Errorf("temporary files left on the server: %v", tmp)
	}
}

// TestRelay moves files vsftpd → pure-ftpd and pure-ftpd → vsftpd through
// the agent.
func TestRelay(t *testing.T) {
	s := NewStack(t, StackOptions{})
	dir := s.FTPDir()
	RemoveOnSuccess(t, env.VSFTPD.Path(dir), env.PureFTPD.Path(dir))
	const size = 3<<20 + 123
	aSum := PutRandomFile(t, env.VSFTPD.Path(dir+"/out/a.bin"), size, 2)
	bSum := PutRandomFile(t, env.PureFTPD.Path(dir+"/out/b.bin"), size, 3)
	small := []byte("relayed text\n")
	cSum := PutFile(t, env.PureFTPD.Path(dir+"/out/c.txt"), small)
	tasks := []Task{
		{TaskID: s.ID("relay-vs-pure"), SrcID: "vsftpd", SrcPath: dir + "/out/a.bin", DstID: "pureftpd", DstPath: dir + "/in/from-vsftpd/a.bin"},
		{TaskID: s.ID("relay-pure-vs"), SrcID: "pureftpd", SrcPath: dir + "/out/b.bin", DstID: "vsftpd", DstPath: dir + "/in/from-pureftpd/b.bin"},
		{TaskID: s.ID("relay-pure-vs-small"), SrcID: "pureftpd", SrcPath: dir + "/out/c.txt", DstID: "vsftpd", DstPath: dir + "/c.txt",
			Extra: map[string]any{"metadata": map[string]any{"requested_by": "realstack", "n": 7}}},
	}
	got := s.Run(t, 90*time.Second, tasks...)
	s.CheckSuccess(t, got[tasks[0].TaskID], tasks[0], size)
	s.CheckSuccess(t, got[tasks[1].TaskID], tasks[1], size)
	s.CheckSuccess(t, got[tasks[2].TaskID], tasks[2], int64(len(small)))
	CheckFile(t, env.PureFTPD.Path(tasks[0].DstPath), aSum, size)
	CheckFile(t, env.VSFTPD.Path(tasks[1].DstPath), bSum, size)
	CheckFile(t, env.VSFTPD.Path(tasks[2].DstPath), cSum, int64(len(small)))
	// Sources stay.
	CheckFile(t, env.VSFTPD.Path(tasks[0].SrcPath), aSum, size)
	CheckFile(t, env.PureFTPD.Path(tasks[1].SrcPath), bSum, size)
	if md, _ := got[tasks[2].TaskID].Fields["metadata"].(map[string]any); md["requested_by"] != "realstack" || md["n"] != float64(7) {
		t.Errorf("metadata not echoed: %s", got[tasks[2].TaskID].Value)
	}
	for _, srv := range []FTPServer{env.VSFTPD, env.PureFTPD} {
		if tmp := TempFiles(srv.Path(dir)); len(tmp) > 0 {
			t.Errorf("temporary files left on %s: %v", srv.Name, tmp)
		}
	}
	// A relay streams through the agent: nothing lands in its local base.
	if tree := Tree(s.Base); len(tree) > 1 {
		t.Errorf("a relay wrote to the local base: %v", tree)
	}
}

// TestNames moves files whose names have spaces and non-ASCII letters,
// through directories 12 levels deep, in every direction.
func TestNames(t *testing.T) {
	s := NewStack(t, StackOptions{})
	dir := s.FTPDir()
	RemoveOnSuccess(t, env.VSFTPD.Path(dir), env.PureFTPD.Path(dir))
	var levels []string
	for i := 1; i <= 12; i++ {
		levels = append(levels, []string{"level one", "ünïcödé", "레벨", "d"}[i%4]+" "+strings.Repeat("x", i))
	}
	deep := strings.Join(levels, "/")
	name := "파일 ü.txt"
	content := []byte("파일 content with ü and spaces\n")
	sum := Sum(content)
	PutFile(t, env.VSFTPD.Path(dir+"/src dir/"+name), content)
	PutFile(t, env.VSFTPD.Path(dir+"/"+deep+"/"+name), content)
	PutFile(t, env.PureFTPD.Path(dir+"/with space/"+name), content)
	PutFile(t, filepath.Join(s.Base, "up load", name), content)
	tasks := []Task{
		{TaskID: s.ID("names-download"), SrcID: "vsftpd", SrcPath: dir + "/src dir/" + name, DstID: "local", DstPath: "down load/" + name},
		{TaskID: s.ID("names-download-deep"), SrcID: "vsftpd", SrcPath: dir + "/" + deep + "/" + name, DstID: "local", DstPath: "deep/" + deep + "/" + name},
		{TaskID: s.ID("names-download-pure"), SrcID: "pureftpd", SrcPath: dir + "/with space/" + name, DstID: "local", DstPath: "pure/" + name},
		{TaskID: s.ID("names-upload-deep"), SrcID: "local", SrcPath: "up load/" + name, DstID: "vsftpd", DstPath: dir + "/up/" + deep + "/" + name},
		{TaskID: s.ID("names-upload-pure"), SrcID: "local", SrcPath: "/up load/" + name, DstID: "pureftpd", DstPath: dir + "/up/" + deep + "/" + name},
		{TaskID: s.ID("names-relay"), SrcID: "vsftpd", SrcPath: dir + "/" + deep + "/" + name, DstID: "pureftpd", DstPath: dir + "/relay/" + deep + "/" + name},
	}
	got := s.Run(t, 90*time.Second, tasks...)
	for _, tk := range tasks {
		s.CheckSuccess(t, got[tk.TaskID], tk, int64(len(content)))
	}
	for _, p := range []string{
		filepath.Join(s.Base, "down load", name),
		filepath.Join(s.Base, "deep", deep, name),
		filepath.Join(s.Base, "pure", name),
		env.VSFTPD.Path(dir + "/up/" + deep + "/" + name),
		env.PureFTPD.Path(dir + "/up/" + deep + "/" + name),
		env.PureFTPD.Path(dir + "/relay/" + deep + "/" + name),
	} {
		CheckFile(t, p, sum, int64(len(content)))
	}
}
