package squall.peers.flink;

import java.io.IOException;
import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.api.common.accumulators.Accumulator;
import org.apache.flink.api.common.accumulators.SimpleAccumulator;
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
 * The digest the harness checks (squall.peers.Digest) is an accumulator:
 * each subtask counts outcomes per event in its Digest (a field increment)
 * and, when the bounded source ends and the final watermark fires the one
 * event-time timer each key registered with its first event, adds the
 * key's window; Flink merges the subtasks' accumulators into the job's
 * result, which main prints.
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

    /** The name of the job's one accumulator, a DigestAccumulator. */
    static final String DIGEST = "digest";

    /**
     * DigestAccumulator is a subtask's Digest as a Flink accumulator: Flink
     * merges the subtasks' into the job's result.
     */
    static final class DigestAccumulator implements SimpleAccumulator<Digest> {
        private static final long serialVersionUID = 1L;
        private Digest d = new Digest();

        @Override
        public void add(Digest o) {
            d.merge(o);
        }

        @Override
        public Digest getLocalValue() {
            return d;
        }

        @Override
        public void resetLocal() {
            d = new Digest();
        }

        @Override
        public void merge(Accumulator<Digest, Digest> o) {
            d.merge(o.getLocalValue());
        }

        @Override
        public DigestAccumulator clone() {
            DigestAccumulator c = new DigestAccumulator();
            c.d.merge(d);
            return c;
        }
    }

    /** Apply updates the key's window with each event and counts what it did. */
    static final class Apply extends KeyedProcessFunction<String, Event, Void> {
        private transient ValueState<Window> window;
        /** tally is this subtask's digest, its accumulator's value: plain fields, one thread. */
        private transient Digest tally;

        @Override
        public void open(OpenContext ctx) {
            window = getRuntimeContext().getState(new ValueStateDescriptor<>("window", TypeInformation.of(Window.class)));
            DigestAccumulator acc = new DigestAccumulator();
            getRuntimeContext().addAccumulator(DIGEST, acc);
            tally = acc.getLocalValue();
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
            tally.outcome(o);
            progress.record();
        }

        /** onTimer adds the key's window to the digest, once, at the end of the input. */
        @Override
        public void onTimer(long ts, OnTimerContext ctx, Collector<Void> out) throws Exception {
            Window w = window.value();
            if (w != null) {
                tally.addWindow(w);
            }
        }
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
        Digest d = res.getAccumulatorResult(DIGEST);
        System.out.println(d.line());
        System.out.flush();
        System.exit(0);
    }
}
