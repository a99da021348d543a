package squall.peers.streams;

import java.io.IOException;
import java.nio.file.Files;
import java.util.Properties;
import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StoreQueryParameters;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.InvalidStateStoreException;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.QueryableStoreTypes;
import org.apache.kafka.streams.state.ReadOnlyKeyValueStore;
import org.apache.kafka.streams.state.StoreBuilder;
import org.apache.kafka.streams.state.Stores;
import squall.peers.Digest;
import squall.peers.Event;
import squall.peers.Progress;
import squall.peers.Window;

/**
 * The Kafka Streams peer of make bench-peers: a Processor API topology that
 * reads the topic from the beginning, decodes each JSON value with a custom
 * Serde (Jackson, one shared ObjectReader) and applies it to its key's
 * Window in an in-memory key-value store (a custom Serde for the window), with
 * or without the store's changelog topic. Once every expected record is
 * processed it prints the digest the harness checks (squall.peers.Digest):
 * the processors' counters and every key's window, read through an
 * interactive query of the store.
 *
 * Usage: Main BOOTSTRAP TOPIC EXPECTED_RECORDS APPLICATION_ID changelog|no-changelog [THREADS]
 */
public final class Main {
    static final String STORE = "windows";

    /** EVENTS decodes record values (the peer never writes events). */
    static final Deserializer<Event> EVENTS = (topic, data) -> {
        try {
            return Event.parse(data);
        } catch (IOException e) {
            return null; // a bad record is skipped by the processor
        }
    };

    /** WINDOWS is the window's compact binary form in the store (Window.write/read). */
    static final Serde<Window> WINDOWS = Serdes.serdeFrom(
            (Serializer<Window>) (topic, w) -> w == null ? null : w.write(),
            (Deserializer<Window>) (topic, data) -> data == null ? null : Window.read(data));

    /** Apply updates the key's window with each event and counts what it did. */
    static final class Apply implements Processor<String, Event, Void, Void> {
        private final Progress progress;
        /** tally is this processor's counters; its stream thread alone writes them. */
        private final Digest tally = new Digest();
        private KeyValueStore<String, Window> store;

        /** Apply registers its tally in tallies for the digest at the end. */
        Apply(Progress progress, Queue<Digest> tallies) {
            this.progress = progress;
            tallies.add(tally);
        }

        @Override
        public void init(ProcessorContext<Void, Void> ctx) {
            store = ctx.getStateStore(STORE);
        }

        @Override
        public void process(Record<String, Event> rec) {
            Event e = rec.value();
            if (e != null && e.key != null) {
                Window w = store.get(e.key);
                if (w == null) {
                    w = new Window();
                }
                int o = w.add(e.ts, e.value, e.id);
                if (o == Window.APPLIED) {
                    store.put(e.key, w);
                }
                tally.outcome(o);
            } else {
                tally.skipped++;
            }
            progress.record();
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 5) {
            System.err.println("usage: Main BOOTSTRAP TOPIC EXPECTED_RECORDS APPLICATION_ID changelog|no-changelog [THREADS]");
            System.exit(2);
        }
        String bootstrap = args[0], topic = args[1], appID = args[3];
        long expected = Long.parseLong(args[2]);
        boolean changelog = args[4].equals("changelog");
        int threads = args.length > 5 ? Integer.parseInt(args[5]) : 2;

        Progress progress = new Progress(expected);
        StoreBuilder<KeyValueStore<String, Window>> store =
                Stores.keyValueStoreBuilder(Stores.inMemoryKeyValueStore(STORE), Serdes.String(), WINDOWS);
        if (changelog) {
            // The record cache in front of the store collapses repeated
            // updates of a key between commits before they reach the changelog.
            store = store.withLoggingEnabled(java.util.Map.of()).withCachingEnabled();
        } else {
            store = store.withLoggingDisabled();
        }
        Topology t = new Topology();
        t.addSource("events", Serdes.String().deserializer(), EVENTS, topic);
        Queue<Digest> tallies = new ConcurrentLinkedQueue<>();
        t.addProcessor("apply", () -> new Apply(progress, tallies), "events");
        t.addStateStore(store, "apply");

        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appID);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, threads);
        p.put(StreamsConfig.STATE_DIR_CONFIG, Files.createTempDirectory("squall-peer-streams").toString());
        p.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");

        KafkaStreams streams = new KafkaStreams(t, p);
        CountDownLatch failed = new CountDownLatch(1);
        streams.setUncaughtExceptionHandler(ex -> {
            ex.printStackTrace();
            failed.countDown();
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        Runtime.getRuntime().addShutdownHook(new Thread(streams::close));
        streams.start();
        Thread digest = new Thread(() -> {
            try {
                progress.await();
                System.out.println(digestWithRetry(streams, tallies).line());
                System.out.flush();
            } catch (InterruptedException ignored) {
                // the JVM is ending
            } catch (RuntimeException ex) {
                ex.printStackTrace();
                failed.countDown();
            }
        }, "squall-peer-digest");
        digest.setDaemon(true);
        digest.start();
        // The harness kills the process once it has read the digest; a
        // failure ends it here.
        failed.await();
        System.exit(1);
    }

    /**
     * digestWithRetry is digest, tried again for up to a minute while the
     * store is not queryable (a rebalance in progress).
     */
    static Digest digestWithRetry(KafkaStreams streams, Queue<Digest> tallies) throws InterruptedException {
        long deadline = System.nanoTime() + 60_000_000_000L;
        while (true) {
            try {
                return digest(streams, tallies);
            } catch (InvalidStateStoreException ex) {
                if (System.nanoTime() > deadline) {
                    throw ex;
                }
                Thread.sleep(100);
            }
        }
    }

    /**
     * digest merges the processors' counters and adds every key's window,
     * read through an interactive query of the store (all local tasks).
     * Called once every record is processed: the stream threads wrote the
     * tallies before counting their last records in the Progress.
     */
    static Digest digest(KafkaStreams streams, Queue<Digest> tallies) {
        Digest d = new Digest();
        for (Digest t : tallies) {
            d.merge(t);
        }
        ReadOnlyKeyValueStore<String, Window> store =
                streams.store(StoreQueryParameters.fromNameAndType(STORE, QueryableStoreTypes.keyValueStore()));
        try (KeyValueIterator<String, Window> it = store.all()) {
            while (it.hasNext()) {
                KeyValue<String, Window> kv = it.next();
                d.addWindow(kv.value);
            }
        }
        return d;
    }
}
