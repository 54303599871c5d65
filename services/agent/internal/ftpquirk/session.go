package ftpquirk

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"io/fs"
	"net"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// session is one control connection.
type session struct {
	s    *Server
	id   int
	raw  net.Conn // TCP under ctrl; what TLS is layered on
	ctrl net.Conn
	r    *bufio.Reader

	secure     bool // the control connection is TLS
	protP      bool // data connections are TLS
	user       string
	loggedIn   bool
	cwd        string // absolute, slash-separated, clean
	ascii      bool   // TYPE A, which RFC 959 makes the default
	rest       int64
	renameFrom string
	quit       bool

	pasv        net.Listener // waiting for the client's data connection
	untrackPasv func()
	active      string // host:port to dial for the next transfer (PORT, EPRT)
	data        net.Conn
	untrackData func()
	// beforeDataFailure undoes what a transfer did before its data
	// connection failed, before the failure is replied.
	beforeDataFailure func()
}

type command struct {
	fn func(*session, string)
	// login says the command needs a logged-in user.
	login bool
}

var commands = map[string]command{
	"USER": {fn: (*session).doUser},
	"PASS": {fn: (*session).doPass},
	"AUTH": {fn: (*session).doAuth},
	"PBSZ": {fn: (*session).doPbsz},
	"PROT": {fn: (*session).doProt},
	"FEAT": {fn: (*session).doFeat},
	"OPTS": {fn: (*session).doOpts},
	"SYST": {fn: func(ss *session, _ string) { ss.reply(215, "UNIX Type: L8") }},
	"NOOP": {fn: func(ss *session, _ string) { ss.reply(200, "NOOP ok.") }},
	"QUIT": {fn: func(ss *session, _ string) { ss.reply(221, "Goodbye."); ss.quit = true }},
	"TYPE": {fn: (*session).doType, login: true},
	"PWD":  {fn: (*session).doPwd, login: true},
	"CWD":  {fn: (*session).doCwd, login: true},
	"CDUP": {fn: (*session).doCdup, login: true},
	"MKD":  {fn: (*session).doMkd, login: true},
	"RMD":  {fn: (*session).doRmd, login: true},
	"DELE": {fn: (*session).doDele, login: true},
	"RNFR": {fn: (*session).doRnfr, login: true},
	"RNTO": {fn: (*session).doRnto, login: true},
	"SIZE": {fn: (*session).doSize, login: true},
	"MDTM": {fn: (*session).doMdtm, login: true},
	"REST": {fn: (*session).doRest, login: true},
	"PASV": {fn: (*session).doPasv, login: true},
	"EPSV": {fn: (*session).doEpsv, login: true},
	"PORT": {fn: (*session).doPort, login: true},
	"EPRT": {fn: (*session).doEprt, login: true},
	"RETR": {fn: (*session).doRetr, login: true},
	"STOR": {fn: func(ss *session, arg string) { ss.store(arg, false) }, login: true},
	"APPE": {fn: func(ss *session, arg string) { ss.store(arg, true) }, login: true},
	"NLST": {fn: func(ss *session, arg string) { ss.list(arg, "NLST") }, login: true},
	"LIST": {fn: func(ss *session, arg string) { ss.list(arg, "LIST") }, login: true},
	"MLSD": {fn: func(ss *session, arg string) { ss.list(arg, "MLSD") }, login: true},
}

func (ss *session) setReader() { ss.r = bufio.NewReader(ss.ctrl) }

func (ss *session) serve() {
	for !ss.quit {
		line, err := ss.r.ReadString('\n')
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		c := Command{Conn: ss.id, Verb: strings.ToUpper(verb), Arg: arg}
		if c.Verb == "PASS" {
			// The log is for test failure messages.
			c.Arg = "****"
		}
		ss.s.record(c)
		if f := ss.s.q.onCommand; f != nil {
			f(c)
		}
		h, ok := commands[c.Verb]
		switch {
		case !ok:
			ss.reply(500, "Unknown command.")
		case h.login && !ss.loggedIn:
			ss.reply(530, "Please login with USER and PASS.")
		default:
			h.fn(ss, arg)
		}
	}
}

// multiLineHeader opens every reply of a MultiLineReplies server. It and
// the codeless line after it avoid the characters clients search replies
// for: parentheses and pipes (PASV, EPSV), quotes (PWD).
const multiLineHeader = "ftpquirk says:\r\n this line has no code, as RFC 959 allows\r\n"

func (ss *session) reply(code int, text string) {
	if ss.s.q.multiLine && code != 213 {
		ss.write(fmt.Sprintf("%d-%s%d %s\r\n", code, multiLineHeader, code, text))
		return
	}
	ss.write(fmt.Sprintf("%d %s\r\n", code, text))
}

// replyLines sends a reply that is multi-line by nature (FEAT); body lines
// go out as they are.
func (ss *session) replyLines(code int, first string, body []string, last string) {
	var b strings.Builder
	fmt.Fprintf(&b, "%d-%s\r\n", code, first)
	for _, l := range body {
		b.WriteString(l + "\r\n")
	}
	fmt.Fprintf(&b, "%d %s\r\n", code, last)
	ss.write(b.String())
}

func (ss *session) write(s string) {
	// A client that stops reading must not hold the session forever; a
	// failed write surfaces as the next read's error.
	_ = ss.ctrl.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, _ = io.WriteString(ss.ctrl, s)
}

// resolve turns a client's path into an absolute virtual path and the
// matching name for os.Root. Cleaning an absolute path drops any ".." that
// would climb above "/", and os.Root refuses symlinks leading out, so no
// name reaches outside the served directory.
func (ss *session) resolve(p string) (virtual, rel string) {
	if !strings.HasPrefix(p, "/") {
		p = path.Join(ss.cwd, p)
	}
	virtual = path.Clean("/" + p)
	rel = strings.TrimPrefix(virtual, "/")
	if rel == "" {
		rel = "."
	}
	return virtual, filepath.FromSlash(rel)
}

func quote(p string) string { return `"` + strings.ReplaceAll(p, `"`, `""`) + `"` }

func (ss *session) doUser(arg string) {
	if ss.loggedIn {
		ss.reply(530, "Can't change to another user.")
		return
	}
	ss.user = arg
	ss.reply(331, "Please specify the password.")
}

func (ss *session) doPass(arg string) {
	switch {
	case ss.loggedIn:
		ss.reply(230, "Already logged in.")
		return
	case ss.user == "":
		ss.reply(503, "Login with USER first.")
		return
	case ss.user != User || arg != Password:
		ss.user = ""
		ss.reply(530, "Login incorrect.")
		return
	}
	q, s := ss.s.q, ss.s
	s.mu.Lock()
	full := q.maxConns > 0 && q.refusal == RefuseAtLogin && s.loggedIn >= q.maxConns
	if !full {
		s.loggedIn++
		ss.loggedIn = true
	}
	s.mu.Unlock()
	if full {
		// ProFTPD's words, and like ProFTPD it hangs up.
		ss.reply(530, fmt.Sprintf("Sorry, the maximum number of clients (%d) for this user are already connected.", q.maxConns))
		ss.quit = true
		return
	}
	s.logins.Add(1)
	ss.reply(230, "Login successful.")
}

func (ss *session) doAuth(arg string) {
	switch mech := strings.ToUpper(strings.TrimSpace(arg)); {
	case ss.s.q.tls == tlsNone:
		ss.reply(502, "AUTH not supported.")
		return
	case ss.secure:
		ss.reply(503, "Already using TLS.")
		return
	case mech != "TLS" && mech != "SSL" && mech != "TLS-C":
		ss.reply(504, "Unknown AUTH type.")
		return
	}
	ss.reply(234, "Proceed with negotiation.")
	tc := tls.Server(ss.raw, ss.s.tlsConf)
	_ = tc.SetDeadline(time.Now().Add(dataTimeout))
	if tc.Handshake() != nil {
		ss.quit = true
		return
	}
	_ = tc.SetDeadline(time.Time{})
	ss.ctrl, ss.secure = tc, true
	ss.setReader()
}

func (ss *session) doPbsz(string) {
	if !ss.secure {
		ss.reply(503, "PBSZ not allowed on insecure control connection.")
		return
	}
	ss.reply(200, "PBSZ=0")
}

func (ss *session) doProt(arg string) {
	if !ss.secure {
		ss.reply(503, "PROT not allowed on insecure control connection.")
		return
	}
	switch strings.ToUpper(strings.TrimSpace(arg)) {
	case "P":
		ss.protP = true
		ss.reply(200, "PROT now Private.")
	case "C":
		ss.protP = false
		ss.reply(200, "PROT now Clear.")
	default:
		ss.reply(504, "Bad PROT command.")
	}
}

func (ss *session) doFeat(string) {
	q := ss.s.q
	feats := []string{" MDTM", " MLST type*;size*;modify*;", " REST STREAM", " TVFS"}
	if !q.activeOnly {
		feats = append(feats, " PASV")
		if !q.noEPSV {
			feats = append(feats, " EPSV")
		}
	}
	if !q.noSize {
		feats = append(feats, " SIZE")
	}
	if !q.noUTF8 {
		feats = append(feats, " UTF8")
	}
	if q.tls == tlsExplicit {
		feats = append(feats, " AUTH TLS")
	}
	if q.tls != tlsNone {
		feats = append(feats, " PBSZ", " PROT")
	}
	slices.Sort(feats)
	ss.replyLines(211, "Features:", feats, "End")
}

func (ss *session) doOpts(arg string) {
	switch opt := strings.ToUpper(strings.Join(strings.Fields(arg), " ")); {
	case (opt == "UTF8 ON" || opt == "UTF8") && !ss.s.q.noUTF8:
		ss.reply(200, "Always in UTF8 mode.")
	default:
		ss.reply(501, "Option not understood.")
	}
}

func (ss *session) doType(arg string) {
	switch strings.ToUpper(strings.Join(strings.Fields(arg), " ")) {
	case "A", "A N":
		ss.ascii = true
		ss.reply(200, "Switching to ASCII mode.")
	case "I", "L 8":
		ss.ascii = false
		ss.reply(200, "Switching to Binary mode.")
	default:
		ss.reply(504, "Bad TYPE command.")
	}
}

func (ss *session) doPwd(string) {
	ss.reply(257, quote(ss.cwd)+" is the current directory")
}

func (ss *session) doCwd(arg string) {
	v, rel := ss.resolve(arg)
	if fi, err := ss.s.root.Stat(rel); err != nil || !fi.IsDir() {
		ss.reply(550, "Failed to change directory.")
		return
	}
	ss.cwd = v
	ss.reply(250, "Directory successfully changed.")
}

func (ss *session) doCdup(string) {
	ss.cwd = path.Dir(ss.cwd)
	ss.reply(250, "Directory successfully changed.")
}

func (ss *session) doMkd(arg string) {
	v, rel := ss.resolve(arg)
	if err := ss.s.root.Mkdir(rel, 0o755); err != nil {
		ss.reply(550, "Create directory operation failed.")
		return
	}
	ss.reply(257, quote(v)+" created")
}

func (ss *session) doRmd(arg string) {
	_, rel := ss.resolve(arg)
	if fi, err := ss.s.root.Lstat(rel); err != nil || !fi.IsDir() || rel == "." || ss.s.root.Remove(rel) != nil {
		ss.reply(550, "Remove directory operation failed.")
		return
	}
	ss.reply(250, "Remove directory operation successful.")
}

func (ss *session) doDele(arg string) {
	_, rel := ss.resolve(arg)
	if fi, err := ss.s.root.Lstat(rel); err != nil || fi.IsDir() || ss.s.root.Remove(rel) != nil {
		ss.reply(550, "Delete operation failed.")
		return
	}
	ss.reply(250, "Delete operation successful.")
}

func (ss *session) doRnfr(arg string) {
	_, rel := ss.resolve(arg)
	if _, err := ss.s.root.Lstat(rel); err != nil || rel == "." {
		ss.renameFrom = ""
		ss.reply(550, "RNFR command failed.")
		return
	}
	ss.renameFrom = rel
	ss.reply(350, "Ready for RNTO.")
}

func (ss *session) doRnto(arg string) {
	from := ss.renameFrom
	ss.renameFrom = ""
	if from == "" {
		ss.reply(503, "RNFR required first.")
		return
	}
	_, rel := ss.resolve(arg)
	if err := ss.s.root.Rename(from, rel); err != nil {
		ss.reply(550, "Rename failed.")
		return
	}
	ss.reply(250, "Rename successful.")
}

func (ss *session) doSize(arg string) {
	q := ss.s.q
	switch {
	case q.noSize:
		ss.reply(502, "SIZE not implemented.")
		return
	case q.sizeRefusedASCII && ss.ascii:
		ss.reply(550, "SIZE not allowed in ASCII mode")
		return
	}
	_, rel := ss.resolve(arg)
	fi, err := ss.s.root.Stat(rel)
	if err != nil || !fi.Mode().IsRegular() {
		ss.reply(550, "Could not get file size.")
		return
	}
	ss.reply(213, strconv.FormatInt(fi.Size(), 10))
}

func (ss *session) doMdtm(arg string) {
	_, rel := ss.resolve(arg)
	fi, err := ss.s.root.Stat(rel)
	if err != nil || !fi.Mode().IsRegular() {
		ss.reply(550, "Could not get file modification time.")
		return
	}
	ss.reply(213, fi.ModTime().UTC().Format("20060102150405"))
}

func (ss *session) doRest(arg string) {
	n, err := strconv.ParseInt(strings.TrimSpace(arg), 10, 64)
	if err != nil || n < 0 {
		ss.reply(501, "Bad REST value.")
		return
	}
	ss.rest = n
	ss.reply(350, fmt.Sprintf("Restart position accepted (%d).", n))
}

// takeRest returns the REST offset for the transfer at hand: it applies to
// the next transfer command only.
func (ss *session) takeRest() int64 {
	n := ss.rest
	ss.rest = 0
	return n
}

func (ss *session) mode() string {
	if ss.ascii {
		return "ASCII"
	}
	return "BINARY"
}

// lsLine formats an entry the way ls -l does, which is what LIST parsers
// expect.
func lsLine(fi fs.FileInfo, name string) string {
	mode := fi.Mode().String()
	if fi.Mode()&fs.ModeSymlink != 0 {
		mode = "l" + mode[1:]
	}
	when := fi.ModTime().Format("Jan _2 15:04")
	if age := time.Since(fi.ModTime()); age > 180*24*time.Hour || age < -time.Hour {
		when = fi.ModTime().Format("Jan _2  2006")
	}
	return fmt.Sprintf("%s 1 ftp ftp %12d %s %s\r\n", mode, fi.Size(), when, name)
}

func mlsdLine(fi fs.FileInfo, name string) string {
	kind := "file"
	if fi.IsDir() {
		kind = "dir"
	}
	return fmt.Sprintf("type=%s;size=%d;modify=%s; %s\r\n", kind, fi.Size(), fi.ModTime().UTC().Format("20060102150405"), name)
}
