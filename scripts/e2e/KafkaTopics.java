// Creates Kafka topics that are missing, all in one JVM (TopicCommand takes a
// JVM start per topic), and waits until every partition has a leader.
// Run by scripts/e2e/kafka.sh in Java's source-file mode:
//   java -cp '<kafka libs>/*' KafkaTopics.java BOOTSTRAP NAME:PARTITIONS...
//   java -cp '<kafka libs>/*' KafkaTopics.java BOOTSTRAP --list
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.errors.TopicExistsException;

public class KafkaTopics {
    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: KafkaTopics BOOTSTRAP NAME:PARTITIONS... | BOOTSTRAP --list");
            System.exit(2);
        }
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        try (Admin admin = Admin.create(p)) {
            if (args[1].equals("--list")) {
                admin.listTopics().names().get(30, TimeUnit.SECONDS).stream().sorted().forEach(System.out::println);
                return;
            }
            Set<String> have = admin.listTopics().names().get(30, TimeUnit.SECONDS);
            List<NewTopic> create = new ArrayList<>();
            List<String> names = new ArrayList<>();
            for (int i = 1; i < args.length; i++) {
                String[] np = args[i].split(":", 2);
                if (np.length != 2) throw new IllegalArgumentException("want NAME:PARTITIONS, got " + args[i]);
                int parts = Integer.parseInt(np[1]);
                names.add(np[0]);
                if (!have.contains(np[0])) create.add(new NewTopic(np[0], parts, (short) 1));
            }
            if (!create.isEmpty()) {
                for (var e : admin.createTopics(create).values().entrySet()) {
                    try {
                        e.getValue().get(30, TimeUnit.SECONDS);
                    } catch (ExecutionException ex) {
                        if (!(ex.getCause() instanceof TopicExistsException)) {
                            throw new RuntimeException("create topic " + e.getKey() + ": " + ex.getCause(), ex.getCause());
                        }
                    }
                }
            }
            // Ready when every partition of every topic named has a leader.
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (true) {
                boolean ready = true;
                try {
                    Map<String, TopicDescription> d = admin.describeTopics(names).allTopicNames().get(10, TimeUnit.SECONDS);
                    for (TopicDescription td : d.values()) {
                        for (var pi : td.partitions()) {
                            if (pi.leader() == null || pi.leader().isEmpty()) ready = false;
                        }
                    }
                } catch (ExecutionException ex) {
                    ready = false;
                }
                if (ready) return;
                if (System.nanoTime() > deadline) throw new RuntimeException("topics " + names + " have no leader after 30 s");
                Thread.sleep(100);
            }
        }
    }
}
