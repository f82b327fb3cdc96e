// Calls a libvirt XML transformer script the way cloudstack-agent does
// (apache/cloudstack LibvirtKvmAgentHook.handle): GroovyScriptEngine(basedir).run(script,
// new Binding()) gives an object; invokeMethod(method, [logger, xml]) gives the XML.
//
//   groovy cloudstack-agent-hook.groovy BASEDIR SCRIPT METHOD < domain.xml > result.xml
//
// The agent's logger is a log4j Logger; this one prints "LEVEL message" on stderr.
// Exit 1 when the script throws (the agent would then start the unchanged XML).

class StderrLogger {
    void debug(Object m) { System.err.println("DEBUG " + m) }
    void info(Object m) { System.err.println("INFO " + m) }
    void warn(Object m) { System.err.println("WARN " + m) }
    void error(Object m) { System.err.println("ERROR " + m) }
}

def (basedir, script, method) = args
String xml = System.in.getText("UTF-8")
def gse = new groovy.util.GroovyScriptEngine(basedir as String)
GroovyObject cls = (GroovyObject) gse.run(script as String, new Binding())
try {
    Object res = cls.invokeMethod(method as String, [new StderrLogger(), xml] as Object[])
    if (res == null) {
        System.err.println("the transformer returned null")
        System.exit(1)
    }
    System.out.print(res)
} catch (Exception e) {
    System.err.println("the transformer threw: " + e.getMessage())
    System.exit(1)
}
