package ftpquirk

import "time"

// Option switches on one habit of a real server.
type Option func(*quirks)

// quirks is what the options set; the zero value is a well-behaved server.
type quirks struct {
	noEPSV             bool
	pasvAddress        string
	noSize             bool
	noRETRSize         bool
	sizeRefusedASCII   bool
	multiLine          bool
	bannerDelay        time.Duration
	closeAfterTransfer bool
	noUTF8             bool
	earlyComplete      bool
	activeOnly         bool
	maxConns           int
	refusal            Refusal
	stallUpload        int64 // negative: never
	stallDownload      int64 // negative: never
	tls                tlsMode
	requireReuse       bool
	onCommand          func(Command)
}

type tlsMode int

const (
	tlsNone tlsMode = iota
	tlsExplicit
	tlsImplicit
)

// Refusal is how a server at its connection limit turns a client away.
type Refusal int

const (
	// RefuseAtBanner answers the connection with 421 instead of 220, as
	// vsftpd max_clients and pure-ftpd do.
	RefuseAtBanner Refusal = iota
	// RefuseAtLogin lets the client log in and refuses its PASS with 530,
	// as ProFTPD MaxClientsPerUser does: indistinguishable from a wrong
	// password by the code alone.
	RefuseAtLogin
)

// NoEPSV answers EPSV with 500, as servers predating RFC 2428 and some
// NAT-minded configurations do; clients must fall back to PASV.
func NoEPSV() Option { return func(q *quirks) { q.noEPSV = true } }

// PASVAddress makes PASV replies advertise ip (say 10.255.255.1) while the
// data port listens on 127.0.0.1 only: a server behind NAT that reports
// its private address. A client that trusts the reply cannot connect.
func PASVAddress(ip string) Option { return func(q *quirks) { q.pasvAddress = ip } }

// NoSize answers SIZE with 502, like servers without RFC 3659.
func NoSize() Option { return func(q *quirks) { q.noSize = true } }

// NoRETRSize leaves the size out of RETR's 150 reply, as pure-ftpd ("150
// Accepted data connection") and IIS ("125 Data connection already open")
// do, where vsftpd and ProFTPD say "(N bytes)".
func NoRETRSize() Option { return func(q *quirks) { q.noRETRSize = true } }

// SizeRefusedInASCII answers SIZE with 550 "SIZE not allowed in ASCII mode"
// while TYPE is A, as ProFTPD and vsftpd do: the size of a file in ASCII
// depends on line-end conversion they refuse to compute.
func SizeRefusedInASCII() Option { return func(q *quirks) { q.sizeRefusedASCII = true } }

// MultiLineReplies sends every reply, the banner included, in the multi-line
// form (with a continuation line that carries no code, which RFC 959
// allows), the way banners, login messages and Pure-FTPd's 150 and 226
// come. SIZE and MDTM values (213) stay single-line: no server splits them
// and clients parse the whole text as the value.
func MultiLineReplies() Option { return func(q *quirks) { q.multiLine = true } }

// BannerDelay waits d before the 220 greeting, as servers doing reverse DNS
// or ident lookups do.
func BannerDelay(d time.Duration) Option { return func(q *quirks) { q.bannerDelay = d } }

// CloseAfterTransfer ends the session after each completed RETR, STOR or
// APPE: 226, then 421, then the control connection closes.
func CloseAfterTransfer() Option { return func(q *quirks) { q.closeAfterTransfer = true } }

// NoUTF8 leaves UTF8 out of FEAT and answers OPTS UTF8 ON with 501, like a
// Latin-1 server. Names are raw bytes on the wire and on disk in any mode;
// this only stops the server from claiming they are UTF-8.
func NoUTF8() Option { return func(q *quirks) { q.noUTF8 = true } }

// EarlyTransferComplete sends a download's 226 before its last bytes and
// before closing the data connection. The order of the two connections is
// not synchronised in FTP; a client that stops reading data at the 226
// loses the tail.
func EarlyTransferComplete() Option { return func(q *quirks) { q.earlyComplete = true } }

// ActiveOnly refuses PASV and EPSV ("500 Passive mode not allowed."); data
// connections are made by the server dialling the address of PORT or EPRT.
func ActiveOnly() Option { return func(q *quirks) { q.activeOnly = true } }

// MaxConnections turns away connections beyond n the way r says: control
// connections for RefuseAtBanner, logged-in sessions for RefuseAtLogin.
func MaxConnections(n int, r Refusal) Option {
	return func(q *quirks) { q.maxConns, q.refusal = n, r }
}

// StallUpload stops reading an upload's data connection after n bytes and
// holds it open, as a server with a full disk or a hung storage backend
// does. The session ends when the client hangs up.
func StallUpload(n int64) Option { return func(q *quirks) { q.stallUpload = n } }

// StallDownload stops sending a download after n bytes without closing the
// data connection; when the client closes it, the server answers 426.
func StallDownload(n int64) Option { return func(q *quirks) { q.stallDownload = n } }

// ExplicitTLS offers AUTH TLS, PBSZ and PROT (RFC 4217) with a self-signed
// certificate for 127.0.0.1 and localhost; see Server.CAFile.
func ExplicitTLS() Option { return func(q *quirks) { q.tls = tlsExplicit } }

// ImplicitTLS speaks TLS from the first byte of the control connection
// (FTPS on port 990 style). Data connections are TLS after PROT P.
func ImplicitTLS() Option { return func(q *quirks) { q.tls = tlsImplicit } }

// RequireTLSReuse refuses, with 425, a TLS data connection that does not
// resume a TLS session, as vsftpd require_ssl_reuse and ProFTPD
// TLSOptions without NoSessionReuseRequired do: proof that the data
// connection comes from the client that owns the control connection.
// Without ImplicitTLS it implies ExplicitTLS.
func RequireTLSReuse() Option { return func(q *quirks) { q.requireReuse = true } }

// OnCommand calls f with each command before the server handles it, on the
// session's goroutine: a test can delay or observe the conversation at an
// exact point.
func OnCommand(f func(Command)) Option { return func(q *quirks) { q.onCommand = f } }
