// Azure Service Bus Data Sender on the trigger queue, for retries off the lock: the
// function schedules a copy of a message there and completes the original
// (docs/host.md, "Retries off the lock"). Its own module so main.bicep can leave it
// out when that is switched off (JOB_UPDATES_SCHEDULED_RETRIES=false, or sessions).

@description('Object (principal) id that receives the role.')
param principalId string

param serviceBusNamespaceName string
param queueName string

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusNamespaceName
}

resource queue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' existing = {
  parent: namespace
  name: queueName
}

resource queueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, principalId, '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39')
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
