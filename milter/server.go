package milter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gomilter "github.com/d--j/go-milter"
)

// Macros tlsgate asks the MTA for (milter protocol 6 macro negotiation; Postfix sends its
// milter_*_macros defaults otherwise, which include these).
var (
	mailMacros = []gomilter.MacroName{gomilter.MacroQueueId, gomilter.MacroAuthAuthen, gomilter.MacroMailAddr}
	rcptMacros = []gomilter.MacroName{gomilter.MacroQueueId, gomilter.MacroRcptMailer, gomilter.MacroRcptHost, gomilter.MacroRcptAddr}
	eomMacros  = []gomilter.MacroName{gomilter.MacroQueueId}
)

// Server is the milter server: go-milter behind a guard that drops connections sending
// packets go-milter cannot parse safely (see guard.go).
type Server struct {
	s *gomilter.Server
}

// Serve accepts milter connections on ln until Close or Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.s.Serve(guardListener{ln}) }

// Shutdown stops accepting and waits for active sessions, up to ctx.
func (s *Server) Shutdown(ctx context.Context) error { return s.s.Shutdown(ctx) }

// Close stops the server and closes every session at once.
func (s *Server) Close() error { return s.s.Close() }

// NewServer returns a milter server that runs f for every recipient.
func (f *Filter) NewServer() *Server {
	return &Server{s: gomilter.NewServer(
		gomilter.WithMilter(func() gomilter.Milter { return &session{f: f} }),
		gomilter.WithAction(gomilter.OptAddHeader),
		// Only the events the decision needs: connect (client address), MAIL, RCPT, and
		// end of message for the header. No headers, no body.
		gomilter.WithProtocol(gomilter.OptNoHelo|gomilter.OptNoHeaders|gomilter.OptNoEOH|gomilter.OptNoBody|
			gomilter.OptNoUnknown|gomilter.OptNoData),
		gomilter.WithMacroRequest(gomilter.StageMail, mailMacros),
		gomilter.WithMacroRequest(gomilter.StageRcpt, rcptMacros),
		gomilter.WithMacroRequest(gomilter.StageEOM, eomMacros),
		// Postfix keeps the milter connection for the whole SMTP session
		// (smtpd_timeout 300s between commands by default).
		gomilter.WithReadTimeout(10*time.Minute),
		gomilter.WithWriteTimeout(10*time.Second),
	)}
}

// session is the state of one milter connection (one SMTP session).
type session struct {
	gomilter.NoOpMilter
	f      *Filter
	client netip.Addr
	sender string
	login  string
	// accepted recipients' verdicts, one per domain, in RCPT order.
	audit []Decision
}

func (s *session) Connect(host string, family string, port uint16, addr string, m gomilter.Modifier) (*gomilter.Response, error) {
	s.client, _ = netip.ParseAddr(addr)
	return gomilter.RespContinue, nil
}

func (s *session) MailFrom(from string, esmtpArgs string, m gomilter.Modifier) (*gomilter.Response, error) {
	s.sender = from
	s.login = m.Get(gomilter.MacroAuthAuthen)
	s.audit = s.audit[:0]
	return gomilter.RespContinue, nil
}

func (s *session) RcptTo(rcptTo string, esmtpArgs string, m gomilter.Modifier) (*gomilter.Response, error) {
	mailer, known := m.GetEx(gomilter.MacroRcptMailer)
	d := s.f.Decide(context.Background(), Request{
		Rcpt:        rcptTo,
		RcptAddr:    m.Get(gomilter.MacroRcptAddr),
		NextHop:     m.Get(gomilter.MacroRcptHost),
		Mailer:      mailer,
		MailerKnown: known && mailer != "",
		Sender:      s.sender,
		SASLLogin:   s.login,
		Client:      s.client,
		QueueID:     m.Get(gomilter.MacroQueueId),
	})
	if d.Outcome == Accept {
		if d.Checked && !s.recorded(d.Verdict.Domain) {
			s.audit = append(s.audit, d)
		}
		return gomilter.RespContinue, nil
	}
	resp, err := gomilter.RejectWithCodeAndReason(d.Reply.Code, d.Reply.Text())
	if err != nil {
		// Cannot happen for replies ReplyFor builds; fail safe anyway.
		return gomilter.RespTempFail, nil
	}
	return resp, nil
}

func (s *session) recorded(domain string) bool {
	for _, d := range s.audit {
		if d.Verdict.Domain == domain {
			return true
		}
	}
	return false
}

func (s *session) EndOfMessage(m gomilter.Modifier) (*gomilter.Response, error) {
	if header := s.f.config().Header; header != "" {
		for _, d := range s.audit {
			if err := m.AddHeader(header, HeaderValue(d.Verdict, d.Rule)); err != nil {
				return nil, fmt.Errorf("milter: adding header: %w", err)
			}
		}
	}
	s.audit = s.audit[:0]
	return gomilter.RespAccept, nil
}

func (s *session) Abort(m gomilter.Modifier) error {
	s.audit = s.audit[:0]
	return nil
}

// libraryLog receives go-milter's own warnings; see LogLibraryWarnings.
var (
	libraryLog     atomic.Pointer[slog.Logger]
	libraryLogHook sync.Once
)

// LogLibraryWarnings sends go-milter's own warnings (a client that breaks the protocol
// or goes silent during negotiation, a connection that fails) to log, as Warn lines
// "milter library" with the text under "warning", instead of the standard logger's
// plain text, which would break a JSON log. The library has one hook for the process
// (gomilter.LogWarning): the logger of the last call gets every warning. Call it
// before starting a server.
func LogLibraryWarnings(log *slog.Logger) {
	libraryLog.Store(log)
	libraryLogHook.Do(func() {
		gomilter.LogWarning = func(format string, v ...any) {
			libraryLog.Load().Warn("milter library", "warning", fmt.Sprintf(format, v...))
		}
	})
}

// ListenConfig says where and how the milter listens.
type ListenConfig struct {
	Network string      // "tcp" or "unix"
	Address string      // host:port or socket path
	Mode    os.FileMode // unix socket permissions, e.g. 0660
	Group   string      // unix socket group name or gid; "" leaves it
}

// Listen opens the milter socket. A stale unix socket file is removed first; any other
// existing file at that path is an error, never overwritten.
func Listen(c ListenConfig) (net.Listener, error) {
	if c.Network != "unix" {
		return net.Listen(c.Network, c.Address)
	}
	if fi, err := os.Lstat(c.Address); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("milter: %s exists and is not a socket", c.Address)
		}
		if conn, err := net.Dial("unix", c.Address); err == nil {
			conn.Close()
			return nil, fmt.Errorf("milter: %s is in use by another process", c.Address)
		}
		if err := os.Remove(c.Address); err != nil {
			return nil, fmt.Errorf("milter: removing stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", c.Address)
	if err != nil {
		return nil, err
	}
	if err := setSocketPerms(c); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

func setSocketPerms(c ListenConfig) error {
	mode := c.Mode
	if mode == 0 {
		mode = 0o660
	}
	if err := os.Chmod(c.Address, mode); err != nil {
		return fmt.Errorf("milter: chmod %s: %w", c.Address, err)
	}
	if c.Group == "" {
		return nil
	}
	gid, err := strconv.Atoi(c.Group)
	if err != nil {
		g, lerr := user.LookupGroup(c.Group)
		if lerr != nil {
			return fmt.Errorf("milter: socket group %q: %w", c.Group, lerr)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	if err := os.Chown(c.Address, -1, gid); err != nil {
		return fmt.Errorf("milter: chown %s to group %s: %w", c.Address, c.Group, err)
	}
	return nil
}

// IsClosed reports whether err is the normal result of shutting the server down.
func IsClosed(err error) bool {
	return err == nil || errors.Is(err, gomilter.ErrServerClosed) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(err.Error(), "use of closed network connection")
}
