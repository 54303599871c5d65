// Runs Apache FtpServer (org.apache.ftpserver:ftpserver-core) as a standalone
// server for the end-to-end compatibility matrix. scripts/e2e/matrix.sh writes
// the settings file and the users file (Apache FtpServer's own
// users.properties format, SHA-512 password hashes, its default) and
// compiles this class once into the cache:
//   java -cp '<libs>/*:<classes>' ApacheFtpd SETTINGS.properties
//
// Settings (all required unless a default is given):
//   address, port          control connection (127.0.0.1, 2140)
//   passive.ports          e.g. 33600-33699
//   idle.seconds           idle timeout of control and data connections
//   max.logins             logins in all (the per-user cap is in the users file)
//   users.file             users.properties
//   tls                    none | explicit | implicit (default none)
//   keystore.file, keystore.password   PKCS12 keystore, when tls is not none
//
// With TLS, a login and every data transfer must be protected: Apache
// FtpServer allows plain ones by default, so a small Ftplet refuses commands
// before AUTH TLS (530) and transfers without PROT P (521), as vsftpd and
// ProFTPD with TLSRequired do.
import java.io.File;
import java.io.FileInputStream;
import java.io.InputStream;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.Set;

import org.apache.ftpserver.ConnectionConfigFactory;
import org.apache.ftpserver.DataConnectionConfigurationFactory;
import org.apache.ftpserver.FtpServer;
import org.apache.ftpserver.FtpServerFactory;
import org.apache.ftpserver.ftplet.DefaultFtpReply;
import org.apache.ftpserver.ftplet.DefaultFtplet;
import org.apache.ftpserver.ftplet.FtpException;
import org.apache.ftpserver.ftplet.FtpRequest;
import org.apache.ftpserver.ftplet.FtpSession;
import org.apache.ftpserver.ftplet.FtpletResult;
import org.apache.ftpserver.listener.ListenerFactory;
import org.apache.ftpserver.ssl.SslConfiguration;
import org.apache.ftpserver.ssl.SslConfigurationFactory;
import org.apache.ftpserver.usermanager.PropertiesUserManagerFactory;

public class ApacheFtpd {
    /** Commands a client may send before AUTH TLS. */
    private static final Set<String> BEFORE_TLS = Set.of("AUTH", "FEAT", "QUIT", "NOOP", "SYST", "HELP", "OPTS");
    /** Commands that open a data connection. */
    private static final Set<String> DATA = Set.of("RETR", "STOR", "STOU", "APPE", "LIST", "NLST", "MLSD");

    /** Refuses what a server with "TLS required" refuses. */
    public static class RequireTls extends DefaultFtplet {
        @Override
        public FtpletResult beforeCommand(FtpSession session, FtpRequest request) throws FtpException, java.io.IOException {
            String cmd = request.getCommand().toUpperCase(Locale.ROOT);
            if (!session.isSecure() && !BEFORE_TLS.contains(cmd)) {
                session.write(new DefaultFtpReply(530, "TLS required on the control connection: use AUTH TLS first."));
                return FtpletResult.SKIP;
            }
            if (DATA.contains(cmd) && !session.getDataConnection().isSecure()) {
                session.write(new DefaultFtpReply(521, "Data connections must be encrypted: use PROT P."));
                return FtpletResult.SKIP;
            }
            return super.beforeCommand(session, request);
        }
    }

    private static String need(Properties p, String key) {
        String v = p.getProperty(key);
        if (v == null || v.isBlank()) throw new IllegalArgumentException("setting '" + key + "' missing");
        return v.trim();
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: ApacheFtpd SETTINGS.properties");
            System.exit(2);
        }
        Properties p = new Properties();
        try (InputStream in = new FileInputStream(args[0])) {
            p.load(in);
        }
        String tls = p.getProperty("tls", "none").trim();
        int idle = Integer.parseInt(need(p, "idle.seconds"));

        SslConfiguration ssl = null;
        if (!tls.equals("none")) {
            if (!tls.equals("explicit") && !tls.equals("implicit")) throw new IllegalArgumentException("tls must be none, explicit or implicit, got " + tls);
            SslConfigurationFactory sf = new SslConfigurationFactory();
            sf.setKeystoreFile(new File(need(p, "keystore.file")));
            sf.setKeystoreType("PKCS12");
            sf.setKeystorePassword(need(p, "keystore.password"));
            sf.setKeyPassword(need(p, "keystore.password"));
            sf.setSslProtocol("TLSv1.2", "TLSv1.3");
            sf.setClientAuthentication("NONE");
            ssl = sf.createSslConfiguration();
        }

        DataConnectionConfigurationFactory dc = new DataConnectionConfigurationFactory();
        dc.setIdleTime(idle);
        dc.setPassivePorts(need(p, "passive.ports"));
        dc.setPassiveAddress(need(p, "address"));
        dc.setPassiveExternalAddress(need(p, "address"));
        dc.setActiveEnabled(true);
        dc.setActiveLocalAddress(need(p, "address"));
        if (ssl != null) {
            dc.setSslConfiguration(ssl);
            dc.setImplicitSsl(tls.equals("implicit"));
        }

        ListenerFactory lf = new ListenerFactory();
        lf.setServerAddress(need(p, "address"));
        lf.setPort(Integer.parseInt(need(p, "port")));
        lf.setIdleTimeout(idle);
        lf.setDataConnectionConfiguration(dc.createDataConnectionConfiguration());
        if (ssl != null) {
            lf.setSslConfiguration(ssl);
            lf.setImplicitSsl(tls.equals("implicit"));
        }

        ConnectionConfigFactory cc = new ConnectionConfigFactory();
        cc.setAnonymousLoginEnabled(false);
        cc.setMaxLogins(Integer.parseInt(need(p, "max.logins")));
        cc.setMaxLoginFailures(10);
        cc.setLoginFailureDelay(0);

        PropertiesUserManagerFactory um = new PropertiesUserManagerFactory();
        um.setFile(new File(need(p, "users.file")));

        FtpServerFactory f = new FtpServerFactory();
        f.addListener("default", lf.createListener());
        f.setConnectionConfig(cc.createConnectionConfig());
        f.setUserManager(um.createUserManager());
        if (ssl != null) f.setFtplets(Map.of("require-tls", new RequireTls()));

        FtpServer server = f.createServer();
        Runtime.getRuntime().addShutdownHook(new Thread(server::stop, "ftpd-stop"));
        server.start();
        System.err.println("ApacheFtpd: listening on " + need(p, "address") + ":" + need(p, "port") + " (tls " + tls + ")");
    }
}
