// pgjdbc through pglane's auto port: reads, a PreparedStatement run more than
// prepareThreshold (5) times so pgjdbc switches to a named server-side statement, and a
// transaction, and read-only transactions (one of them on an unlogged table). Prints
// "key value..." lines for tests/integration/test_auto_clients.py.
import java.sql.*;

public class AutoClient {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/postgres";
        try (Connection c = DriverManager.getConnection(url, "postgres", "postgres")) {
            c.setAutoCommit(true);
            try (Statement s = c.createStatement()) {
                for (int i = 0; i < 6; i++) {
                    try (ResultSet rs = s.executeQuery("SELECT current_setting('cluster_name')")) {
                        rs.next();
                        System.out.println("read " + rs.getString(1));
                    }
                }
            }
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT ?::int * 3, current_setting('cluster_name')")) {
                for (int i = 0; i < 12; i++) {
                    ps.setInt(1, i);
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        System.out.println("prepared " + i + " " + rs.getInt(1) + " " + rs.getString(2)
                                + " " + ps.unwrap(org.postgresql.PGStatement.class).isUseServerPrepare());
                    }
                }
            }
            c.setAutoCommit(false);
            try (PreparedStatement ins = c.prepareStatement(
                    "INSERT INTO ac_java (v) VALUES (?) RETURNING id, current_setting('cluster_name')")) {
                ins.setString(1, "from java");
                try (ResultSet rs = ins.executeQuery()) {
                    rs.next();
                    long id = rs.getLong(1);
                    System.out.println("tx " + rs.getString(2));
                    try (PreparedStatement sel = c.prepareStatement(
                            "SELECT v, current_setting('cluster_name') FROM ac_java WHERE id = ?")) {
                        sel.setLong(1, id);
                        try (ResultSet r2 = sel.executeQuery()) {
                            r2.next();
                            System.out.println("tx " + r2.getString(2));
                            System.out.println("txvalue " + r2.getString(1));
                        }
                    }
                }
            }
            c.commit();
            // Read-only transactions (readOnlyMode=transaction: BEGIN READ ONLY goes with the
            // first query); the last reads an unlogged table, which no standby can read.
            c.setReadOnly(true);
            for (int i = 0; i < 3; i++) {
                try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(
                        "SELECT current_setting('cluster_name'), current_setting('transaction_read_only')")) {
                    rs.next();
                    System.out.println("rotx " + rs.getString(1) + " " + rs.getString(2));
                }
                c.commit();
            }
            for (int i = 0; i < 2; i++) {
                try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(
                        "SELECT v, current_setting('cluster_name'), current_setting('transaction_read_only') "
                                + "FROM ac_java_unlogged")) {
                    rs.next();
                    System.out.println("unlogged " + rs.getInt(1) + " " + rs.getString(2) + " " + rs.getString(3));
                }
                c.commit();
            }
            System.out.println("done");
        }
    }
}
