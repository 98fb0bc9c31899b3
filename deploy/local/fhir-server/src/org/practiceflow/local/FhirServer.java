package org.practiceflow.local;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.rest.annotation.OptionalParam;
import ca.uhn.fhir.rest.annotation.RequiredParam;
import ca.uhn.fhir.rest.annotation.Search;
import ca.uhn.fhir.rest.api.server.RequestDetails;
import ca.uhn.fhir.rest.param.DateRangeParam;
import ca.uhn.fhir.rest.param.ReferenceParam;
import ca.uhn.fhir.rest.param.TokenParam;
import ca.uhn.fhir.util.FhirTerser;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.exceptions.ResourceVersionConflictException;
import ca.uhn.fhir.rest.server.provider.HashMapResourceProvider;
import java.util.ArrayList;
import java.util.Date;
import java.util.List;
import org.eclipse.jetty.ee10.servlet.ServletContextHandler;
import org.eclipse.jetty.ee10.servlet.ServletHolder;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import org.hl7.fhir.instance.model.api.IBase;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.instance.model.api.IIdType;
import org.hl7.fhir.r4.model.Claim;
import org.hl7.fhir.r4.model.Coverage;
import org.hl7.fhir.r4.model.MedicationRequest;
import org.hl7.fhir.r4.model.Organization;
import org.hl7.fhir.r4.model.Patient;
import org.hl7.fhir.r4.model.PractitionerRole;
import org.hl7.fhir.r4.model.ServiceRequest;
import org.hl7.fhir.r4.model.Task;

/**
 * A FHIR R4 server for tests and the sample day: HAPI FHIR's plain RESTful server with in-memory
 * storage (HashMapResourceProvider), standing in for a practice's EHR API the way the local Kafka
 * stands in for a production broker. Nothing is persisted; the process is the store.
 *
 * <p>Two things the stock in-memory provider lacks and an EHR's API has, added here because the
 * write-back relies on them: {@code If-Match} on update is enforced (a stale version gets 409/412,
 * as on a real server), and {@code _lastUpdated} is a search parameter (the decisions poller asks
 * for the Tasks changed since its last poll), with {@code requester} (the poller asks only for its
 * practice's Tasks: several practices may share one FHIR base).
 *
 * <p>Usage: {@code java -cp jars/*:classes org.practiceflow.local.FhirServer PORT} (listens on
 * 127.0.0.1 only; base URL http://127.0.0.1:PORT/fhir).
 */
public final class FhirServer {
  private FhirServer() {}

  /** In-memory provider with {@code If-Match} enforced and a {@code _lastUpdated} search. */
  public static class Provider<T extends IBaseResource> extends HashMapResourceProvider<T> {
    private final FhirContext context;

    public Provider(FhirContext ctx, Class<T> type) {
      super(ctx, type);
      this.context = ctx;
    }

    @Override
    public synchronized ca.uhn.fhir.rest.api.MethodOutcome update(
        T resource, String conditional, RequestDetails request) {
      IIdType id = resource.getIdElement();
      if (id.hasVersionIdPart() && myIdToVersionToResourceMap.containsKey(id.getIdPart())) {
        Long current = myIdToVersionToResourceMap.get(id.getIdPart()).lastKey();
        if (!id.getVersionIdPart().equals(String.valueOf(current))) {
          throw new ResourceVersionConflictException(
              "If-Match " + id.getVersionIdPart() + " but the current version is " + current);
        }
      }
      resource.getMeta().setLastUpdated(new Date());
      return super.update(resource, conditional, request);
    }

    /** Every stored version gets meta.lastUpdated (the stock provider sets only versionId). */
    @Override
    public synchronized ca.uhn.fhir.rest.api.MethodOutcome create(T resource, RequestDetails request) {
      resource.getMeta().setLastUpdated(new Date());
      return super.create(resource, request);
    }

    @Search(allowUnknownParams = true)
    public synchronized List<IBaseResource> searchByLastUpdated(
        @RequiredParam(name = "_lastUpdated") DateRangeParam range,
        @OptionalParam(name = "requester") ReferenceParam requester,
        RequestDetails request) {
      List<IBaseResource> out = new ArrayList<>();
      String wanted = requester == null ? null : requester.getValue();
      Date lower = range.getLowerBoundAsInstant();
      Date upper = range.getUpperBoundAsInstant();
      for (T r : getStoredResources()) {
        Date updated = r.getMeta().getLastUpdated();
        if (updated != null
            && (lower == null || !updated.before(lower))
            && (upper == null || !updated.after(upper))
            && (wanted == null
                || wanted.equals(
                    context.newTerser().getSinglePrimitiveValueOrNull(r, "requester.reference")))) {
          out.add(r);
        }
      }
      return fireInterceptorsAndFilterAsNeeded(out, request);
    }
  }

  /**
   * Like {@link Provider}, plus a search by {@code identifier=system|value}: the write-back finds a
   * matched patient's own chart by MRN before writing a signed registration (the stock provider's
   * search ignores the parameter and returns every Patient).
   */
  public static class IdentifiedProvider<T extends IBaseResource> extends Provider<T> {
    private final FhirContext ctx;

    public IdentifiedProvider(FhirContext ctx, Class<T> type) {
      super(ctx, type);
      this.ctx = ctx;
    }

    @Search(allowUnknownParams = true)
    public synchronized List<IBaseResource> searchByIdentifier(
        @RequiredParam(name = "identifier") TokenParam token, RequestDetails request) {
      List<IBaseResource> out = new ArrayList<>();
      FhirTerser terser = ctx.newTerser();
      for (T r : getStoredResources()) {
        for (IBase ident : terser.getValues(r, "identifier")) {
          String system = terser.getSinglePrimitiveValueOrNull(ident, "system");
          String value = terser.getSinglePrimitiveValueOrNull(ident, "value");
          if (token.getValue().equals(value)
              && (token.getSystem() == null || token.getSystem().isEmpty() || token.getSystem().equals(system))) {
            out.add(r);
            break;
          }
        }
      }
      return fireInterceptorsAndFilterAsNeeded(out, request);
    }
  }

  public static void main(String[] args) throws Exception {
    int port = Integer.parseInt(args[0]);
    FhirContext ctx = FhirContext.forR4();
    RestfulServer servlet = new RestfulServer(ctx);
    servlet.registerProvider(new Provider<>(ctx, Task.class));
    servlet.registerProvider(new IdentifiedProvider<>(ctx, Patient.class));
    servlet.registerProvider(new Provider<>(ctx, Coverage.class));
    servlet.registerProvider(new Provider<>(ctx, MedicationRequest.class));
    servlet.registerProvider(new Provider<>(ctx, ServiceRequest.class)); // orders: the prior-auth number (issue 11)
    servlet.registerProvider(new Provider<>(ctx, Claim.class));
    servlet.registerProvider(new Provider<>(ctx, Organization.class));
    servlet.registerProvider(new Provider<>(ctx, PractitionerRole.class));
    servlet.setDefaultResponseEncoding(ca.uhn.fhir.rest.api.EncodingEnum.JSON);

    Server server = new Server();
    ServerConnector connector = new ServerConnector(server);
    connector.setHost("127.0.0.1");
    connector.setPort(port);
    server.addConnector(connector);
    ServletContextHandler context = new ServletContextHandler();
    context.setContextPath("/");
    context.addServlet(new ServletHolder(servlet), "/fhir/*");
    server.setHandler(context);
    server.start();
    System.out.println("practiceflow fhir server listening on http://127.0.0.1:" + port + "/fhir");
    System.out.flush();
    server.join();
  }
}
