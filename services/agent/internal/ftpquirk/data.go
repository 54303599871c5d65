package ftpquirk

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// With EarlyTransferComplete, a download's last earlyTail bytes follow its
// 226 by earlyGap: long enough that a client reading both connections sees
// the 226 first.
const (
	earlyTail = 4 << 10
	earlyGap  = 20 * time.Millisecond
)

func (ss *session) doPasv(string) {
	if ss.s.q.activeOnly {
		ss.reply(500, "Passive mode not allowed.")
		return
	}
	port, ok := ss.listenData()
	if !ok {
		return
	}
	ip := ss.raw.LocalAddr().(*net.TCPAddr).IP
	if a := net.ParseIP(ss.s.q.pasvAddress); a != nil {
		ip = a
	}
	ss.reply(227, "Entering Passive Mode ("+pasvNumbers(ip, port)+").")
}

func (ss *session) doEpsv(arg string) {
	switch q := ss.s.q; {
	case q.activeOnly:
		ss.reply(500, "Passive mode not allowed.")
		return
	case q.noEPSV:
		ss.reply(500, "'EPSV': command not understood")
		return
	case strings.EqualFold(strings.TrimSpace(arg), "ALL"):
		ss.reply(200, "EPSV ALL ok.")
		return
	}
	port, ok := ss.listenData()
	if !ok {
		return
	}
	ss.reply(229, fmt.Sprintf("Entering Extended Passive Mode (|||%d|)", port))
}

// listenData opens the passive port for the next transfer, replacing any
// earlier one.
func (ss *session) listenData() (port int, ok bool) {
	ss.dropData()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ss.reply(425, "Could not listen for a data connection.")
		return 0, false
	}
	ss.pasv, ss.untrackPasv = l, ss.s.track(l)
	return l.Addr().(*net.TCPAddr).Port, true
}

func (ss *session) doPort(arg string) {
	f := strings.Split(strings.TrimSpace(arg), ",")
	if len(f) != 6 {
		ss.reply(501, "Illegal PORT command.")
		return
	}
	var b [6]byte
	for i, s := range f {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 0 || n > 255 {
			ss.reply(501, "Illegal PORT command.")
			return
		}
		b[i] = byte(n)
	}
	ss.setActive(net.IPv4(b[0], b[1], b[2], b[3]), int(b[4])<<8|int(b[5]), "PORT command successful. Consider using PASV.")
}

// doEprt takes RFC 2428's |proto|address|port|, whose first character is
// the delimiter.
func (ss *session) doEprt(arg string) {
	arg = strings.TrimSpace(arg)
	if len(arg) < 2 {
		ss.reply(501, "Bad EPRT command.")
		return
	}
	f := strings.Split(arg[1:], arg[:1])
	if len(f) != 4 || (f[0] != "1" && f[0] != "2") {
		ss.reply(501, "Bad EPRT command.")
		return
	}
	ip := net.ParseIP(f[1])
	port, err := strconv.Atoi(f[2])
	if ip == nil || err != nil {
		ss.reply(501, "Bad EPRT command.")
		return
	}
	ss.setActive(ip, port, "EPRT command successful. Consider using EPSV.")
}

// setActive accepts an active-mode address only on the client's own IP, as
// vsftpd (port_promiscuous=NO) does against FTP bounce attacks; it also
// keeps this server from dialling anything but its test's client.
func (ss *session) setActive(ip net.IP, port int, ok string) {
	client := ss.raw.RemoteAddr().(*net.TCPAddr).IP
	if !ip.Equal(client) || port < 1 || port > 65535 {
		ss.reply(500, "Illegal PORT command.")
		return
	}
	ss.dropData()
	ss.active = net.JoinHostPort(ip.String(), strconv.Itoa(port))
	ss.reply(200, ok)
}

// dropData forgets the passive port or active address set up for a
// transfer that will not happen.
func (ss *session) dropData() {
	if ss.pasv != nil {
		_ = ss.pasv.Close()
		ss.untrackPasv()
		ss.pasv = nil
	}
	ss.active = ""
}

func (ss *session) closeData() {
	ss.dropData()
	if ss.data != nil {
		// For TLS this sends close_notify, which tells the client the
		// data is complete.
		_ = ss.data.Close()
		ss.untrackData()
		ss.data = nil
	}
}

// openData makes a transfer's data connection: accepts on the passive port
// or dials the active address, answers 150 with mark, and after PROT P does
// the TLS handshake. The handshake comes after the 150 because clients
// (jlaffaye/ftp among them) begin TLS on a data connection only once they
// have read it. On failure openData has replied and returns nil.
func (ss *session) openData(mark string) net.Conn {
	var c net.Conn
	var err error
	switch {
	case ss.pasv != nil:
		_ = ss.pasv.(*net.TCPListener).SetDeadline(time.Now().Add(dataTimeout))
		c, err = ss.pasv.Accept()
		ss.dropData()
	case ss.active != "":
		addr := ss.active
		ss.active = ""
		c, err = net.DialTimeout("tcp", addr, dataTimeout)
	default:
		ss.dataFailed(425, "Use PORT or PASV first.")
		return nil
	}
	if err != nil {
		ss.dataFailed(425, "Failed to establish connection.")
		return nil
	}
	ss.data, ss.untrackData = c, ss.s.track(c)
	ss.reply(150, mark)
	if !ss.protP {
		return c
	}
	tc := tls.Server(c, ss.s.tlsConf)
	_ = tc.SetDeadline(time.Now().Add(dataTimeout))
	if err := tc.Handshake(); err != nil {
		// ProFTPD's reply when a client closes an FTPS data connection
		// without starting TLS, as clients uploading an empty file do
		// when they forget the handshake.
		ss.closeData()
		ss.dataFailed(425, "Unable to build data connection: Operation not permitted")
		return nil
	}
	if ss.s.q.requireReuse && !tc.ConnectionState().DidResume {
		ss.closeData()
		ss.dataFailed(425, "Unable to build data connection: TLS session reuse required")
		return nil
	}
	_ = tc.SetDeadline(time.Time{})
	ss.data = tc
	return tc
}

// dataFailed replies that a transfer's data connection failed, once what
// the transfer left is undone (beforeDataFailure): a client acts on the
// reply at once.
func (ss *session) dataFailed(code int, text string) {
	if undo := ss.beforeDataFailure; undo != nil {
		ss.beforeDataFailure = nil
		undo()
	}
	ss.reply(code, text)
}

// transferDone is where a server that ends sessions after each transfer
// does so.
func (ss *session) transferDone() {
	if ss.s.q.closeAfterTransfer {
		ss.reply(421, "Service not available, closing control connection.")
		ss.quit = true
	}
}

func (ss *session) doRetr(arg string) {
	_, rel := ss.resolve(arg)
	rest := ss.takeRest()
	f, err := ss.s.root.Open(rel)
	if err != nil {
		ss.dropData()
		ss.reply(550, "Failed to open file.")
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err == nil && fi.Mode().IsRegular() && rest > 0 {
		_, err = f.Seek(rest, io.SeekStart)
	}
	if err != nil || !fi.Mode().IsRegular() {
		ss.dropData()
		ss.reply(550, "Failed to open file.")
		return
	}
	mark := fmt.Sprintf("Opening %s mode data connection for %s (%d bytes).", ss.mode(), arg, fi.Size())
	if ss.s.q.noRETRSize {
		mark = "Accepted data connection"
	}
	dc := ss.openData(mark)
	if dc == nil {
		return
	}
	q := ss.s.q
	switch {
	case q.stallDownload >= 0:
		_, _ = io.CopyN(dc, f, q.stallDownload)
		// Hold until the client gives up and closes (or the server stops).
		_, _ = io.Copy(io.Discard, dc)
		ss.closeData()
		ss.reply(426, "Failure writing network stream.")
		return
	case q.earlyComplete:
		if _, err := io.CopyN(dc, f, max(0, fi.Size()-rest-earlyTail)); err != nil {
			ss.closeData()
			ss.reply(426, "Failure writing network stream.")
			return
		}
		ss.reply(226, "Transfer complete.")
		if ss.s.sleep(earlyGap) {
			_, _ = io.Copy(dc, f)
		}
		ss.closeData()
	default:
		_, err := io.Copy(dc, f)
		ss.closeData()
		if err != nil {
			ss.reply(426, "Failure writing network stream.")
			return
		}
		ss.reply(226, "Transfer complete.")
	}
	ss.transferDone()
}

// store serves STOR (from the REST offset, truncating there) and APPE.
func (ss *session) store(arg string, appendMode bool) {
	_, rel := ss.resolve(arg)
	rest := ss.takeRest()
	_, statErr := ss.s.root.Lstat(rel)
	existed := statErr == nil
	flag := os.O_WRONLY | os.O_CREATE
	if appendMode {
		flag |= os.O_APPEND
	}
	f, err := ss.s.root.OpenFile(rel, flag, 0o644)
	if err != nil {
		ss.dropData()
		ss.reply(553, "Could not create file.")
		return
	}
	defer f.Close()
	// Nothing was uploaded, so nothing may appear: a test of an empty
	// upload must not pass on an empty file left by a failed one.
	ss.beforeDataFailure = func() {
		if !existed {
			_ = ss.s.root.Remove(rel)
		}
	}
	dc := ss.openData("Ok to send data.")
	ss.beforeDataFailure = nil
	if dc == nil {
		return
	}
	if !appendMode {
		_ = f.Truncate(rest)
		_, _ = f.Seek(rest, io.SeekStart)
	}
	if q := ss.s.q; q.stallUpload >= 0 {
		_, _ = io.CopyN(f, dc, q.stallUpload)
		// Hold the data connection unread until the client hangs up the
		// control connection (or the server stops); the session is lost.
		_, _ = io.Copy(io.Discard, ss.r)
		ss.quit = true
		return
	}
	_, err = io.Copy(f, dc)
	ss.closeData()
	if err != nil {
		ss.reply(426, "Failure reading network stream.")
		return
	}
	ss.reply(226, "Transfer complete.")
	ss.transferDone()
}

// list serves NLST (names only; dot files only with -a, as vsftpd and
// ProFTPD do), LIST (ls -l lines) and MLSD (RFC 3659 facts, everything).
func (ss *session) list(arg, kind string) {
	hidden := kind == "MLSD"
	target := strings.TrimSpace(arg)
	if strings.HasPrefix(target, "-") {
		// ls options, which clients send and servers tolerate.
		var opts string
		opts, target, _ = strings.Cut(target, " ")
		hidden = hidden || strings.Contains(opts, "a")
	}
	v, rel := ss.resolve(target)
	fi, err := ss.s.root.Stat(rel)
	if err != nil {
		ss.dropData()
		ss.reply(550, "Failed to open directory.")
		return
	}
	var out bytes.Buffer
	switch {
	case !fi.IsDir() && kind == "MLSD":
		ss.dropData()
		ss.reply(501, "Not a directory.")
		return
	case !fi.IsDir() && kind == "NLST":
		out.WriteString(target + "\r\n")
	case !fi.IsDir():
		out.WriteString(lsLine(fi, path.Base(v)))
	default:
		entries, err := ss.readDir(rel)
		if err != nil {
			ss.dropData()
			ss.reply(550, "Failed to open directory.")
			return
		}
		for _, e := range entries {
			if !hidden && strings.HasPrefix(e.Name(), ".") {
				continue
			}
			switch kind {
			case "NLST":
				out.WriteString(e.Name() + "\r\n")
			case "LIST":
				out.WriteString(lsLine(e, e.Name()))
			default:
				out.WriteString(mlsdLine(e, e.Name()))
			}
		}
	}
	dc := ss.openData("Here comes the directory listing.")
	if dc == nil {
		return
	}
	_, err = dc.Write(out.Bytes())
	ss.closeData()
	if err != nil {
		ss.reply(426, "Failure writing network stream.")
		return
	}
	ss.reply(226, "Directory send OK.")
}

func (ss *session) readDir(rel string) ([]fs.FileInfo, error) {
	d, err := ss.s.root.Open(rel)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	des, err := d.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	infos := make([]fs.FileInfo, 0, len(des))
	for _, de := range des {
		if fi, err := de.Info(); err == nil {
			infos = append(infos, fi)
		}
	}
	slices.SortFunc(infos, func(a, b fs.FileInfo) int { return strings.Compare(a.Name(), b.Name()) })
	return infos, nil
}
