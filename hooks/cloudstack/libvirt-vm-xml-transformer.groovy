// virt-l3's cloudstack-agent hook: attaches virt-l3's nwfilter to every routed NIC
// of a VM and defines the filters in libvirtd, before the agent starts the VM.
//
// Install as /etc/cloudstack/agent/hooks/libvirt-vm-xml-transformer.groovy (the
// agent's default agent.hooks.basedir and agent.hooks.libvirt_vm_xml_transformer.script;
// the method is agent.hooks.libvirt_vm_xml_transformer.method, default `transform`).
//
// The contract (apache/cloudstack, LibvirtKvmAgentHook and LibvirtStartCommandWrapper):
// the agent evaluates this file with GroovyScriptEngine, takes the value of its last
// expression as an object, and calls transform(logger, xml) on it with the domain XML it
// is about to start; the returned string is the XML the agent starts. If the script
// throws, or returns null, the agent logs a warning and starts the UNCHANGED XML: it
// cannot abort the start. virt-l3's hook then refuses that VM at `prepare`
// (require_nwfilter, on by default), so a failure here still stops the VM, with
// virt-l3's reason in the start error. Failures are also logged here at ERROR.
//
// What it runs (the same as hooks/virt-l3-prepare-domain):
//   virt-l3 nwfilter inject  < xml   -> the XML with <filterref> on each routed NIC
//   virt-l3 nwfilter define  < that  -> the filters, defined in libvirtd with virsh
// The binary is $VIRT_L3_BIN, else /usr/bin/virt-l3; its configuration is the usual one
// ($VIRT_L3_CONFIG, else /etc/virt-l3/config.toml).

import java.util.concurrent.TimeUnit

class VirtL3Transform {
    static final long TIMEOUT_SECONDS = 60

    static String binary() {
        String b = System.getenv("VIRT_L3_BIN")
        return (b != null && !b.isEmpty()) ? b : "/usr/bin/virt-l3"
    }

    static void log(Object logger, String level, String message) {
        if (logger == null) {
            System.err.println("virt-l3 hook: " + message)
            return
        }
        try {
            logger."$level"(message)
        } catch (Exception ignored) {
            System.err.println("virt-l3 hook: " + message)
        }
    }

    // Runs `virt-l3 ARGS` with `input` on stdin; returns stdout, throws with stderr.
    static String run(List<String> args, String input) {
        List<String> cmd = [binary()] + args
        Process p = new ProcessBuilder(cmd).start()
        ByteArrayOutputStream out = new ByteArrayOutputStream()
        ByteArrayOutputStream err = new ByteArrayOutputStream()
        Thread tOut = Thread.start { out << p.getInputStream() }
        Thread tErr = Thread.start { err << p.getErrorStream() }
        try {
            p.getOutputStream().withStream { it.write(input.getBytes("UTF-8")) }
        } catch (IOException ignored) {
            // virt-l3 stopped reading (oversize XML): its exit status says why.
        }
        if (!p.waitFor(TIMEOUT_SECONDS, TimeUnit.SECONDS)) {
            p.destroyForcibly()
            throw new RuntimeException("`" + cmd.join(" ") + "` did not finish within " + TIMEOUT_SECONDS + " s")
        }
        tOut.join()
        tErr.join()
        String stderr = err.toString("UTF-8").trim()
        if (p.exitValue() != 0) {
            throw new RuntimeException("`" + cmd.join(" ") + "` failed (exit " + p.exitValue() + "): " + stderr)
        }
        return out.toString("UTF-8")
    }

    String transform(Object logger, String xml) {
        try {
            String injected = run(["nwfilter", "inject"], xml)
            String defined = run(["nwfilter", "define"], injected).trim()
            if (!defined.isEmpty()) {
                log(logger, "info", "virt-l3: " + defined.replace("\n", ", "))
            }
            return injected
        } catch (Exception e) {
            log(logger, "error", "virt-l3: the VM's filters could not be attached (the agent will start the unchanged XML, which virt-l3's hook refuses): " + e.getMessage())
            throw e
        }
    }
}

new VirtL3Transform()
