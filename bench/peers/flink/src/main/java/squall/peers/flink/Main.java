package squall.peers.flink;

import java.io.IOException;
import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.api.common.accumulators.DoubleCounter;
import org.apache.flink.api.common.accumulators.LongCounter;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;
import org.apache.flink.util.Collector;
import squall.peers.Digest;
import squall.peers.Event;
import squall.peers.Progress;
import squall.peers.Window;

/**
 * The Flink peer of make bench-peers: a local execution environment (a
 * MiniCluster in this JVM) with parallelism 2 and the heap (hashmap) state
 * backend; a bounded KafkaSource reads the topic from the earliest to the
 * latest offsets, decoding each JSON value with Jackson (one shared
 * ObjectReader) into the Event POJO; keyBy(key) sends each event to the
 * subtask owning its key, where a KeyedProcessFunction applies it to the
 * key's Window in ValueState. No checkpoints; object reuse on.
 *
 * The digest the harness checks (squall.peers.Digest) comes from
 * accumulators: each subtask counts outcomes per event (a LongCounter's add
 * is a field increment) and, when the bounded source ends and the final
 * watermark fires the one event-time timer each key registered with its
 * first event, adds the key's window; Flink merges the subtasks'
 * accumulators into the job's result, which main prints.
 *
 * Usage: Main BOOTSTRAP TOPIC EXPECTED_RECORDS GROUP_ID [PARALLELISM]
 */
public final class Main {
    /** PROGRESS is shared by the subtasks, all in this JVM. */
    static Progress progress;

    /** EventSchema decodes one record value. */
    static final class EventSchema implements DeserializationSchema<Event> {
        @Override
        public Event deserialize(byte[] message) throws IOException {
            return Event.parse(message);
        }

        @Override
        public boolean isEndOfStream(Event e) {
            return false;
        }

        @Override
        public TypeInformation<Event> getProducedType() {
            return TypeInformation.of(Event.class);
        }
    }

    /** The accumulators' names; each is a field of Digest. */
    static final String KEYS = "keys", APPLIED = "applied", LATE = "late", DUPLICATES = "duplicates",
            WINDOW_COUNT = "window-count", WINDOW_CENTS = "window-cents", WINDOW_SUM = "window-sum";

    /** Apply updates the key's window with each event and counts what it did. */
    static final class Apply extends KeyedProcessFunction<String, Event, Void> {
        private transient ValueState<Window> window;
        private transient LongCounter[] outcomes; // indexed by Window.APPLIED, LATE, DUPLICATE
        private transient LongCounter keys, windowCount, windowCents;
        private transient DoubleCounter windowSum;

        @Override
        public void open(OpenContext ctx) {
            window = getRuntimeContext().getState(new ValueStateDescriptor<>("window", TypeInformation.of(Window.class)));
            outcomes = new LongCounter[3];
            outcomes[Window.APPLIED] = counter(APPLIED);
            outcomes[Window.LATE] = counter(LATE);
            outcomes[Window.DUPLICATE] = counter(DUPLICATES);
            keys = counter(KEYS);
            windowCount = counter(WINDOW_COUNT);
            windowCents = counter(WINDOW_CENTS);
            windowSum = new DoubleCounter();
            getRuntimeContext().addAccumulator(WINDOW_SUM, windowSum);
        }

        private LongCounter counter(String name) {
            LongCounter c = new LongCounter();
            getRuntimeContext().addAccumulator(name, c);
            return c;
        }

        @Override
        public void processElement(Event e, Context ctx, Collector<Void> out) throws Exception {
            Window w = window.value();
            if (w == null) {
                w = new Window();
                // Fires once, with the final watermark at the end of the input.
                ctx.timerService().registerEventTimeTimer(Long.MAX_VALUE);
            }
            int o = w.add(e.ts, e.value, e.id);
            if (o == Window.APPLIED) {
                window.update(w);
            }
            outcomes[o].add(1L);
            progress.record();
        }

        /** onTimer adds the key's window to the digest, once, at the end of the input. */
        @Override
        public void onTimer(long ts, OnTimerContext ctx, Collector<Void> out) throws Exception {
            Window w = window.value();
            if (w != null) {
                // As Digest.addWindow, on accumulators.
                Digest d = new Digest();
                d.addWindow(w);
                keys.add(d.keys);
                windowCount.add(d.windowCount);
                windowCents.add(d.windowCents);
                windowSum.add(d.windowSum);
            }
        }
    }

    /** digest reads the job's accumulators (every subtask's, merged). */
    static Digest digest(JobExecutionResult res) {
        Digest d = new Digest();
        d.keys = res.<Long>getAccumulatorResult(KEYS);
        d.applied = res.<Long>getAccumulatorResult(APPLIED);
        d.late = res.<Long>getAccumulatorResult(LATE);
        d.duplicates = res.<Long>getAccumulatorResult(DUPLICATES);
        d.windowCount = res.<Long>getAccumulatorResult(WINDOW_COUNT);
        d.windowCents = res.<Long>getAccumulatorResult(WINDOW_CENTS);
        d.windowSum = res.<Double>getAccumulatorResult(WINDOW_SUM);
        return d;
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 4) {
            System.err.println("usage: Main BOOTSTRAP TOPIC EXPECTED_RECORDS GROUP_ID [PARALLELISM]");
            System.exit(2);
        }
        progress = new Progress(Long.parseLong(args[2]));
        int parallelism = args.length > 4 ? Integer.parseInt(args[4]) : 2;

        Configuration conf = new Configuration();
        conf.setString("state.backend.type", "hashmap");
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(conf);
        env.setParallelism(parallelism);
        // Flink's tuning advice when functions keep no reference to their
        // input: no defensive copy between chained operators.
        env.getConfig().enableObjectReuse();

        KafkaSource<Event> source = KafkaSource.<Event>builder()
                .setBootstrapServers(args[0])
                .setTopics(args[1])
                .setGroupId(args[3])
                .setStartingOffsets(OffsetsInitializer.earliest())
                .setBounded(OffsetsInitializer.latest())
                .setValueOnlyDeserializer(new EventSchema())
                .build();
        env.fromSource(source, WatermarkStrategy.noWatermarks(), "events")
                .keyBy(e -> e.key)
                .process(new Apply())
                .sinkTo(new DiscardingSink<>());
        JobExecutionResult res = env.execute("squall-peer");
        // A record Flink cannot decode fails the job; skipped stays 0.
        System.out.println(digest(res).line());
        System.out.flush();
        System.exit(0);
    }
}
