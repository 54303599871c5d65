package taskpath

import (
	"errors"
	"testing"
)

func TestLocal(t *testing.T) {
	t.Parallel()
	const base = "/data/storage"
	tests := []struct {
		name    string
		base    string
		path    string
		want    string
		wantErr bool
	}{
		{name: "absolute under base is used as is", path: "/data/storage/test1.txt", want: "test1.txt"},
		{name: "absolute under base, nested", path: "/data/storage/in/a/b.txt", want: "in/a/b.txt"},
		{name: "absolute elsewhere is relative to base", path: "/in/a.txt", want: "in/a.txt"},
		{name: "relative", path: "in/a.txt", want: "in/a.txt"},
		{name: "double leading slash stays inside", path: "//etc/passwd", want: "etc/passwd"},
		{name: "prefix that is not a directory boundary", path: "/data/storageX/a", want: "data/storageX/a"},
		{name: "duplicate slash under base", path: "/data/storage//a.txt", want: "a.txt"},
		{name: "dot dot that stays inside", path: "a/../b.txt", want: "b.txt"},
		{name: "spaces and unicode", path: "/data/storage/dir with space/파일 ü.txt", want: "dir with space/파일 ü.txt"},
		{name: "base of slash", base: "/", path: "/srv/x", want: "srv/x"},
		{name: "traversal relative", path: "../../etc/passwd", wantErr: true},
		{name: "traversal absolute", path: "/../../etc/passwd", wantErr: true},
		{name: "traversal in the middle", path: "a/../../b", wantErr: true},
		{name: "traversal below base prefix", path: "/data/storage/../etc/passwd", wantErr: true},
		{name: "dot dot alone", path: "..", wantErr: true},
		{name: "dot", path: ".", wantErr: true},
		{name: "dot dot back to base", path: "a/..", wantErr: true},
		{name: "base itself", path: "/data/storage", wantErr: true},
		{name: "base with slash", path: "/data/storage/", wantErr: true},
		{name: "trailing slash", path: "in/", wantErr: true},
		{name: "empty", path: "", wantErr: true},
		{name: "root", path: "/", wantErr: true},
		{name: "NUL", path: "a\x00b", wantErr: true},
		{name: "newline", path: "a\nb", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := base
			if tc.base != "" {
				b = tc.base
			}
			got, err := Local(b, tc.path)
			if tc.wantErr {
				if !errors.Is(err, ErrRejected) {
					t.Fatalf("Local(%q, %q) = %q, %v; want ErrRejected", b, tc.path, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Local(%q, %q) = %q, %v; want %q", b, tc.path, got, err, tc.want)
			}
		})
	}
}

func TestRemote(t *testing.T) {
	t.Parallel()
	tests := []struct {
		path string
		ok   bool
	}{
		{"/test1.txt", true},
		{"in/a b.txt", true},
		{"/dir/", false},
		{"", false},
		{"/a\r\nDELE /b", false},
		{"/a/..", false},
		{"/a/.", false},
	}
	for _, tc := range tests {
		err := Remote(tc.path)
		if (err == nil) != tc.ok {
			t.Errorf("Remote(%q) = %v, want ok=%v", tc.path, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrRejected) {
			t.Errorf("Remote(%q) error %v does not wrap ErrRejected", tc.path, err)
		}
	}
}

func FuzzLocal(f *testing.F) {
	for _, s := range []string{"/data/storage/a", "../x", "/../../etc/passwd", "a/../../b", "//etc", "a/./b/../c", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		rel, err := Local("/data/storage", p)
		if err != nil {
			if !errors.Is(err, ErrRejected) {
				t.Fatalf("error %v does not wrap ErrRejected", err)
			}
			return
		}
		// Whatever is accepted must stay below the base once joined.
		if rel == "" || rel == "." || rel == ".." || len(rel) >= 3 && rel[:3] == "../" || rel[0] == '/' {
			t.Fatalf("Local(%q) = %q escapes or names the base", p, rel)
		}
	})
}
