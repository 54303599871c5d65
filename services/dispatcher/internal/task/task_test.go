package task

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
	"github.com/ftp-pooler/ftp-pooler/services/internal/failure"
)

const seed = `{"task_id":"test-001","src_id":"remote-ftp","src_path":"/test1.txt","dst_id":"local","dst_path":"/data/storage/test1.txt"}`

func rec(v string) *Record {
	return &Record{Topic: "ftp-tasks", Partition: 2, Offset: 41, Value: []byte(v)}
}

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		value    string
		wantType string
		wantCode string
		wantMsg  string
		check    func(t *testing.T, tk *Task)
	}{
		{name: "seed", value: seed, check: func(t *testing.T, tk *Task) {
			if tk.ID != "test-001" || tk.SrcID != "remote-ftp" || tk.SrcPath != "/test1.txt" ||
				tk.DstID != "local" || tk.DstPath != "/data/storage/test1.txt" || !tk.Overwrite || tk.Metadata != nil {
				t.Errorf("task = %+v", tk)
			}
		}},
		{name: "derived id", value: `{"src_id":"a","src_path":"b","dst_id":"c","dst_path":"d"}`, check: func(t *testing.T, tk *Task) {
			if tk.ID != "ftp-tasks-2-41" {
				t.Errorf("id = %q", tk.ID)
			}
		}},
		{name: "null and empty task_id derive", value: `{"task_id":null,"src_id":"a","src_path":"b","dst_id":"c","dst_path":"d"}`, check: func(t *testing.T, tk *Task) {
			if tk.ID != "ftp-tasks-2-41" {
				t.Errorf("id = %q", tk.ID)
			}
		}},
		{name: "metadata echoed compact, unknown fields ignored", value: `{"task_id":"x","src_id":"a","src_path":"b","dst_id":"c","dst_path":"d","metadata":{ "k" : [1, 2] },"priority":5}`,
			check: func(t *testing.T, tk *Task) {
				if string(tk.Metadata) != `{"k":[1,2]}` {
					t.Errorf("metadata = %s", tk.Metadata)
				}
			}},
		{name: "overwrite false", value: `{"src_id":"a","src_path":"b","dst_id":"c","dst_path":"d","overwrite":false}`, check: func(t *testing.T, tk *Task) {
			if tk.Overwrite {
				t.Error("overwrite = true")
			}
		}},
		{name: "unicode", value: `{"task_id":"ü","src_id":"a","src_path":"/dir with space/파일.txt","dst_id":"c","dst_path":"d"}`, check: func(t *testing.T, tk *Task) {
			if tk.SrcPath != "/dir with space/파일.txt" {
				t.Errorf("src_path = %q", tk.SrcPath)
			}
		}},
		{name: "empty", value: "", wantType: TypeParseError, wantCode: CodeEmpty},
		{name: "whitespace", value: " \n", wantType: TypeParseError, wantCode: CodeEmpty},
		{name: "not json", value: "not json", wantType: TypeParseError, wantCode: CodeInvalidJSON},
		{name: "truncated json", value: `{"src_id":`, wantType: TypeParseError, wantCode: CodeInvalidJSON},
		{name: "two objects", value: `{}{}`, wantType: TypeParseError, wantCode: CodeInvalidJSON},
		{name: "invalid utf8", value: "{\"src_id\":\"\xff\"}", wantType: TypeParseError, wantCode: CodeInvalidUTF8},
		{name: "array", value: `[]`, wantType: TypeParseError, wantCode: CodeNotAnObject, wantMsg: "array"},
		{name: "number", value: `42`, wantType: TypeParseError, wantCode: CodeNotAnObject, wantMsg: "number"},
		{name: "string", value: `"task"`, wantType: TypeParseError, wantCode: CodeNotAnObject},
		{name: "null", value: `null`, wantType: TypeParseError, wantCode: CodeNotAnObject},
		{name: "empty object", value: `{}`, wantType: TypeInvalidTask, wantCode: CodeMissingField, wantMsg: "dst_id, dst_path, src_id, src_path"},
		{name: "one missing", value: `{"src_id":"a","src_path":"b","dst_id":"c"}`, wantType: TypeInvalidTask, wantCode: CodeMissingField, wantMsg: "dst_path"},
		{name: "wrong type", value: `{"src_id":1,"src_path":"b","dst_id":"c","dst_path":"d"}`, wantType: TypeInvalidTask, wantCode: CodeWrongType, wantMsg: "src_id must be a string, got a number"},
		{name: "null field", value: `{"src_id":null,"src_path":"b","dst_id":"c","dst_path":"d"}`, wantType: TypeInvalidTask, wantCode: CodeWrongType, wantMsg: "got null"},
		{name: "numeric task_id", value: `{"task_id":7,"src_id":"a","src_path":"b","dst_id":"c","dst_path":"d"}`, wantType: TypeInvalidTask, wantCode: CodeWrongType, wantMsg: "task_id"},
		{name: "metadata array", value: `{"src_id":"a","src_path":"b","dst_id":"c","dst_path":"d","metadata":[1]}`, wantType: TypeInvalidTask, wantCode: CodeWrongType, wantMsg: "metadata"},
		{name: "overwrite string", value: `{"src_id":"a","src_path":"b","dst_id":"c","dst_path":"d","overwrite":"no"}`, wantType: TypeInvalidTask, wantCode: CodeWrongType, wantMsg: "overwrite"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tk, rej := Parse(rec(tc.value))
			if tc.wantCode == "" {
				if rej != nil {
					t.Fatalf("rejected: %v", rej)
				}
				tc.check(t, tk)
				return
			}
			if rej == nil {
				t.Fatalf("accepted %+v, want %s", tk, tc.wantCode)
			}
			if rej.Type != tc.wantType || rej.Code != tc.wantCode || !strings.Contains(rej.Message, tc.wantMsg) {
				t.Fatalf("rejection = %+v, want %s/%s containing %q", rej, tc.wantType, tc.wantCode, tc.wantMsg)
			}
		})
	}
}

func testConnections(t testing.TB) *config.Connections {
	t.Helper()
	c, err := config.ParseConnections([]byte(`
[remote-ftp]
type = ftp
host = 127.0.0.1
port = 2121
user = u
pass = p
[other-ftp]
type = ftp
host = 127.0.0.1
port = 2122
[single]
type = ftp
host = 127.0.0.1
max_connections = 1
[local]
type = local
base_path = /data/storage
[archive]
type = local
base_path = /data
[sftp]
type = sftp
host = 127.0.0.1
user = u
pass = p
insecure_ignore_host_key = true
max_connections = 1
[sftp-one-session]
type = sftp
host = 127.0.0.1
user = u
pass = p
insecure_ignore_host_key = true
max_connections = 1
max_sessions_per_connection = 1
`), "/", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCheck(t *testing.T) {
	t.Parallel()
	conns := testConnections(t)
	tests := []struct {
		name string
		task Task
		want failure.Code // 0 = ok
	}{
		{name: "seed", task: Task{SrcID: "remote-ftp", SrcPath: "/test1.txt", DstID: "local", DstPath: "/data/storage/test1.txt"}},
		{name: "upload", task: Task{SrcID: "local", SrcPath: "a.txt", DstID: "remote-ftp", DstPath: "/in/a.txt"}},
		{name: "relay", task: Task{SrcID: "remote-ftp", SrcPath: "/a", DstID: "other-ftp", DstPath: "/a"}},
		{name: "relay same server other path", task: Task{SrcID: "remote-ftp", SrcPath: "/a", DstID: "remote-ftp", DstPath: "/b"}},
		{name: "unknown src", task: Task{SrcID: "nope", SrcPath: "/a", DstID: "local", DstPath: "a"}, want: failure.UnknownEndpoint},
		{name: "unknown dst", task: Task{SrcID: "local", SrcPath: "a", DstID: "nope", DstPath: "/a"}, want: failure.UnknownEndpoint},
		{name: "traversal dst", task: Task{SrcID: "remote-ftp", SrcPath: "/a", DstID: "local", DstPath: "../../etc/passwd"}, want: failure.PathRejected},
		{name: "traversal src", task: Task{SrcID: "local", SrcPath: "/../../etc/passwd", DstID: "remote-ftp", DstPath: "/a"}, want: failure.PathRejected},
		{name: "empty src path", task: Task{SrcID: "remote-ftp", SrcPath: "", DstID: "local", DstPath: "a"}, want: failure.PathRejected},
		{name: "CRLF injection", task: Task{SrcID: "remote-ftp", SrcPath: "/a\r\nDELE /b", DstID: "local", DstPath: "a"}, want: failure.PathRejected},
		{name: "ftp same path", task: Task{SrcID: "remote-ftp", SrcPath: "/a//b.txt", DstID: "remote-ftp", DstPath: "/a/b.txt"}, want: failure.InvalidTask},
		{name: "local same file", task: Task{SrcID: "local", SrcPath: "/data/storage/x", DstID: "local", DstPath: "x"}, want: failure.InvalidTask},
		{name: "local same file across nested bases", task: Task{SrcID: "local", SrcPath: "x", DstID: "archive", DstPath: "storage/x"}, want: failure.InvalidTask},
		{name: "copy within an endpoint allowing one connection", task: Task{SrcID: "single", SrcPath: "/a", DstID: "single", DstPath: "/b"}, want: failure.InvalidTask},
		// One SSH connection carries several sessions: a copy needs two.
		{name: "sftp copy on one connection", task: Task{SrcID: "sftp", SrcPath: "/a", DstID: "sftp", DstPath: "/b"}},
		{name: "sftp copy on one session", task: Task{SrcID: "sftp-one-session", SrcPath: "/a", DstID: "sftp-one-session", DstPath: "/b"}, want: failure.InvalidTask},
		{name: "sftp same path", task: Task{SrcID: "sftp", SrcPath: "/a/./b", DstID: "sftp", DstPath: "/a/b"}, want: failure.InvalidTask},
		{name: "sftp to ftp, same host and path", task: Task{SrcID: "sftp", SrcPath: "/a", DstID: "single", DstPath: "/a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := Check(&tc.task, conns, 10)
			if tc.want == 0 {
				if err != nil {
					t.Fatalf("Check = %v", err)
				}
				return
			}
			if err == nil || err.Code != tc.want {
				t.Fatalf("Check = %v, want %s", err, failure.Name(tc.want))
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{seed, "", "not json", "[]", "42", "{}", `{"src_id":1}`, "\xff\xfe", `{"metadata":{"a":1},"src_id":"a","src_path":"b","dst_id":"c","dst_path":"d"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		tk, rej := Parse(&Record{Topic: "t", Value: value})
		if (tk == nil) == (rej == nil) {
			t.Fatalf("Parse must return exactly one of task and rejection: %v %v", tk, rej)
		}
		if rej != nil {
			if rej.Type == "" || rej.Code == "" || rej.Message == "" {
				t.Fatalf("incomplete rejection %+v", rej)
			}
			return
		}
		if tk.ID == "" || !utf8.ValidString(tk.SrcPath) {
			t.Fatalf("bad task %+v", tk)
		}
	})
}
